//! Bad input through the real SQL: spend-log rows with arbitrary floats (NaN, infinities,
//! negatives, subnormals, huge values), arbitrary 32-bit token counts, timestamps centuries
//! apart, JSON numbers beyond any float, and arbitrary NUL-free text in the label columns, drawn
//! by proptest and written to a throwaway PostgreSQL, some before the exporter starts (chunked
//! catch-up) and some while it runs (row-by-row polls). The exporter must keep reading (no query
//! error, no row that stops the catch-up), count every row it can read once (all but a `startTime` of +infinity), count
//! the bad numbers, and serve text that `promtool check metrics` accepts.
//! More rows: `PROPTEST_CASES=2000 cargo test --test it fuzz`.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::data::promtool_check;
use super::exporter::{close, Exporter, Scrape, FAST};
use super::support::{fresh_db, Schema};

/// One generated row. Times are offsets from the database clock, in milliseconds (the
/// timestamp columns keep microseconds; milliseconds keep "end before start" unambiguous).
#[derive(Debug, Clone)]
struct Row {
    spend: f64,
    tokens: (i32, i32, i32),
    start_ago_ms: i64,
    end_after_ms: i64,
    first_token_after_ms: i64,
    team: String,
    model: String,
    alias: String,
    user_agent: String,
    failed: bool,
    /// Raw JSON text of a token detail (cached_tokens), possibly not a number at all.
    cached: &'static str,
    overhead: &'static str,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,12}",
        2 => proptest::collection::vec(
            prop::sample::select(vec!['"', '\\', '\n', '\r', '\u{2028}', '{', '}', '=', ',', '\u{0301}', 'a']),
            0..12
        ).prop_map(String::from_iter),
        1 => any::<String>(),
        1 => prop::sample::select(vec!["", "other", "None", "\\n", "\\u0000"]).prop_map(str::to_string),
    ]
    .prop_map(|s| s.replace('\0', "")) // PostgreSQL text cannot hold NUL
}

fn spend() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => 0.0..10.0f64,
        2 => prop::num::f64::ANY,
        1 => prop::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 5e-324, f64::MIN_POSITIVE, 1e308,
            -1e-300, 999_999.999, 1e6, f64::MAX, f64::MIN,
        ]),
    ]
}

/// JSON numbers PostgreSQL's `numeric` holds but no float does, negatives, and non-numbers.
const JSON_NUMBERS: &[&str] = &[
    "5",
    "0.5",
    "-3",
    "1e400",
    "-1e400",
    "1e-400",
    "123456789012345678901234567890",
    "\"lots\"",
    "null",
    "{}",
    "[1]",
    "true",
];

fn row() -> impl Strategy<Value = Row> {
    let ms = prop_oneof![
        4 => 0..120_000i64,
        1 => -120_000..0i64,
        1 => -10_000_000_000_000..10_000_000_000_000i64, // about ±300 years
    ];
    (
        spend(),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        0..3 * 3_600_000i64,
        ms.clone(),
        ms,
        (text(), text(), text(), text()),
        any::<bool>(),
        prop::sample::select(JSON_NUMBERS),
        prop::sample::select(JSON_NUMBERS),
    )
        .prop_map(
            |(spend, tokens, start_ago_ms, end, first, (team, model, alias, ua), failed, c, o)| {
                Row {
                    spend,
                    tokens,
                    start_ago_ms,
                    end_after_ms: end,
                    first_token_after_ms: first,
                    team,
                    model,
                    alias,
                    user_agent: ua,
                    failed,
                    cached: c,
                    overhead: o,
                }
            },
        )
}

impl Row {
    /// Bad numbers as the accounting rules define them: spend not in [0, 1e6), a negative token
    /// count, an end before the start.
    fn bad_numbers(&self) -> u64 {
        let spend_ok = self.spend >= 0.0 && self.spend < 1e6;
        let (t, p, c) = self.tokens;
        u64::from(!spend_ok) + u64::from(t < 0 || p < 0 || c < 0) + u64::from(self.end_after_ms < 0)
    }
}

async fn insert(c: &tokio_postgres::Client, id: &str, r: &Row) {
    let metadata = format!(
        "{{\"status\": {}, \"user_api_key_alias\": {}, \"user_agent\": {}, \
           \"usage_object\": {{\"prompt_tokens_details\": {{\"cached_tokens\": {}}}}}, \
           \"litellm_overhead_time_ms\": {}}}",
        if r.failed {
            "\"failure\""
        } else {
            "\"success\""
        },
        serde_json::Value::String(r.alias.clone()),
        serde_json::Value::String(r.user_agent.clone()),
        r.cached,
        r.overhead,
    );
    let (t, p, k) = r.tokens;
    c.execute(
        "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
            prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
            model, model_group, custom_llm_provider, team_id, status, metadata)
         SELECT $1, 'acompletion', 'hash-fuzz', $2, $3, $4, $5, s,
                s + make_interval(secs => $7::float8 / 1000), s + make_interval(secs => $8::float8 / 1000),
                $9, $9, 'openai', $10, $11, $12::text::jsonb
         FROM (SELECT date_trunc('milliseconds', now() AT TIME ZONE 'UTC')
                      - make_interval(secs => $6::float8 / 1000) AS s) x",
        &[
            &id,
            &r.spend,
            &t,
            &p,
            &k,
            &(r.start_ago_ms as f64),
            &(r.end_after_ms as f64),
            &(r.first_token_after_ms as f64),
            &r.model,
            &r.team,
            &(if r.failed { "failure" } else { "success" }),
            &metadata,
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("insert {r:?}: {e}"));
}

/// Rows no generator is likely to hit: a time to first token beyond 64-bit microseconds,
/// timestamps at the ends of PostgreSQL's range, infinite ones.
const EXTREMES: &[&str] = &[
    // completionStartTime 292,300 years after startTime: its microseconds exceed 2^63.
    "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
        prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
        model, status)
     VALUES ('x-ttft', 'acompletion', 'k', 1, 10, 5, 5, '1000-01-01', '293400-01-01',
        '293300-01-01', 'x-extreme', 'success')",
    "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
        prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
        model, status)
     VALUES ('x-range', 'acompletion', 'k', 1, 10, 5, 5, '4713-01-01 BC', '294276-12-31',
        '294276-12-31', 'x-extreme', 'success')",
    "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
        prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
        model, status)
     VALUES ('x-inf', 'acompletion', 'k', 1, 10, 5, 5, 'infinity', 'infinity', 'infinity', 'm',
        'success'),
            ('x-ninf', 'acompletion', 'k', 1, 10, 5, 5, '-infinity', 'infinity', '-infinity', 'm',
        'success')",
];

fn draw(runner: &mut TestRunner, n: usize) -> Vec<Row> {
    let s = proptest::collection::vec(row(), n);
    s.new_tree(runner).expect("rows").current()
}

async fn wait_for(e: &Exporter, want_rows: f64) -> (Scrape, String) {
    let start = Instant::now();
    loop {
        let (status, body) = e.get("/metrics").await;
        assert_eq!(status, 200, "scrape failed; log:\n{}", e.log_text());
        let s = Scrape::parse(&body);
        let got = s.total("litellm_proxy_total_requests_metric_total");
        if got == want_rows {
            return (s, body);
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{got} requests counted, {want_rows} rows readable; log:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn fuzzed_rows_are_counted_and_served_as_valid_text() {
    let n: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut runner = TestRunner::default();
    let before = draw(&mut runner, n);
    let during = draw(&mut runner, n);

    let db = fresh_db(Schema::New);
    let c = db.client().await;
    for (i, r) in before.iter().enumerate() {
        insert(&c, &format!("b{i}"), r).await;
    }
    for sql in EXTREMES {
        c.batch_execute(sql).await.expect(sql);
    }
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(60)).await;
    for (i, r) in during.iter().enumerate() {
        // Rows written while the exporter runs must start inside its lateness window (1 h) to
        // be counted by it; older late rows are, by design, left to the next rebuild.
        let r = Row {
            start_ago_ms: r.start_ago_ms % 1_800_000,
            ..r.clone()
        };
        insert(&c, &format!("d{i}"), &r).await;
    }

    // The catch-up's first chunk starts at -infinity; no window reaches +infinity.
    let readable: f64 = c
        .query_one(
            "SELECT count(*)::float8 FROM \"LiteLLM_SpendLogs\" WHERE \"startTime\" < 'infinity'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let (s, body) = wait_for(&e, readable).await;
    promtool_check(&body);
    for x in &s.samples {
        assert!(!x.value.is_nan(), "{} is NaN", x.name);
    }
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    assert_eq!(
        s.total("litellm_exporter_errors_total"),
        0.0,
        "a row made a read fail; log:\n{}",
        e.log_text()
    );

    let rows: Vec<&Row> = before.iter().chain(&during).collect();
    // The extreme rows: x-ttft, x-range and x-ninf are counted with spend 1 and 10 tokens each;
    // x-ninf's durations are not finite (one bad number); x-inf is never read.
    let bad: u64 = rows.iter().map(|r| r.bad_numbers()).sum::<u64>() + 1;
    assert_eq!(
        s.value("litellm_exporter_bad_numbers_total").unwrap_or(0.0),
        bad as f64,
        "bad numbers counted"
    );
    let good_spend: f64 = rows
        .iter()
        .filter(|r| !r.failed && r.spend >= 0.0 && r.spend < 1e6)
        .map(|r| r.spend)
        .sum::<f64>()
        + 3.0;
    let got = s.total("litellm_spend_metric_total");
    assert!(close(got, good_spend, 1e-9), "spend {got} vs {good_spend}");
    let tokens: f64 = rows
        .iter()
        .filter(|r| !r.failed)
        .map(|r| f64::from(r.tokens.0.max(0)))
        .sum::<f64>()
        + 30.0;
    assert_eq!(s.total("litellm_total_tokens_metric_total"), tokens);

    // x-ttft waited 292,300 years for its first token: the observation is capped, not wrapped
    // around into the smallest bucket.
    let ttft: Vec<_> = s
        .named("litellm_llm_api_time_to_first_token_metric_bucket")
        .filter(|x| x.labels.get("model").map(String::as_str) == Some("x-extreme"))
        .collect();
    assert!(!ttft.is_empty(), "no time-to-first-token series for x-ttft");
    for b in ttft {
        let want = if b.labels["le"] == "+Inf" { 1.0 } else { 0.0 };
        assert_eq!(b.value, want, "{:?}", b.labels);
    }
}
