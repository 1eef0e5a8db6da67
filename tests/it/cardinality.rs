//! The series cap under real cardinality: 100,000 distinct end users with
//! `prometheus_metrics_max_series_per_metric: 1000`. Every capped family keeps at most 1000 series
//! plus one `other` series (LiteLLM's convention: every label "other"), its totals equal the SQL
//! truth, `litellm_exporter_folded_rows_total` equals the rows SQL says landed in `other`, the text
//! passes `promtool check metrics`, and more rows, for folded users and for a user that displaces
//! a kept one, keep every counter from decreasing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::data::promtool_check;
use super::exporter::{close, Exporter, Scrape, FAST};
use super::support::{fresh_db, Schema};

const CAP: usize = 1000;
const USERS: i64 = 100_000;

/// The capped families of this test: two counters and a histogram, each with only `end_user`.
const FAMILIES: [(&str, &str); 3] = [
    (
        "litellm_proxy_total_requests_metric",
        "litellm_proxy_total_requests_metric_total",
    ),
    ("litellm_spend_metric", "litellm_spend_metric_total"),
    (
        "litellm_request_total_latency_metric",
        "litellm_request_total_latency_metric_count",
    ),
];

const CONFIG: &str = "litellm_settings:
  enable_end_user_cost_tracking_prometheus_only: true
  prometheus_metrics_config:
    - group: by_end_user
      metrics: [litellm_proxy_total_requests_metric, litellm_spend_metric, litellm_request_total_latency_metric]
      include_labels: [end_user]
  prometheus_metrics_max_series_per_metric: 1000
";

/// Inserts rows `from..to` of a series in one statement: row `g` belongs to end user
/// `<prefix><first_user + g mod users, 6 digits>`, costs (g mod 7 + 1) / 1000 and started up to
/// `max_age_secs` ago. Rows inserted before the exporter starts go back three hours, so that
/// both the chunked catch-up and the row-by-row window see some; rows inserted while it runs
/// stay inside its lateness window (1 h), beyond which a late row is, by design, not counted.
async fn insert(
    c: &tokio_postgres::Client,
    tag: &str,
    (from, to, max_age_secs): (i64, i64, i64),
    (prefix, first_user, users): (&str, i64, i64),
) {
    c.execute(
        "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
            prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
            model, model_group, custom_llm_provider, end_user, status, metadata)
         SELECT $1 || g, 'acompletion', 'hash-card', (g % 7 + 1) / 1000.0, 10, 4, 6,
            (now() AT TIME ZONE 'UTC') - make_interval(secs => (g % $7)::float8),
            (now() AT TIME ZONE 'UTC') - make_interval(secs => (g % $7)::float8) + interval '1 second',
            (now() AT TIME ZONE 'UTC') - make_interval(secs => (g % $7)::float8) + interval '1 second',
            'openai/gpt-4o', 'gpt-4o', 'openai', $5 || lpad(($6 + g % $4)::text, 6, '0'), 'success',
            '{\"status\": \"success\"}'::jsonb
         FROM generate_series($2::bigint, $3::bigint - 1) g",
        &[&tag, &from, &to, &users, &prefix, &first_user, &max_age_secs],
    )
    .await
    .expect("insert spend-log rows");
}

/// What SQL says the exporter must show: row count, spend, the kept end users (the first CAP
/// by label text; the zero-padded ASCII names sort the same as their label blocks) and the rows
/// of all other end users.
struct Truth {
    rows: f64,
    spend: f64,
    kept: BTreeSet<String>,
    folded_rows: f64,
}

async fn truth(c: &tokio_postgres::Client) -> Truth {
    let r = c
        .query_one(
            "SELECT count(*)::float8, sum(spend)::float8 FROM \"LiteLLM_SpendLogs\"",
            &[],
        )
        .await
        .expect("totals");
    let kept: BTreeSet<String> = c
        .query(
            "SELECT u FROM (SELECT DISTINCT end_user COLLATE \"C\" AS u FROM \"LiteLLM_SpendLogs\") d
             ORDER BY u LIMIT $1",
            &[&(CAP as i64)],
        )
        .await
        .expect("kept users")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let kept_list: Vec<String> = kept.iter().cloned().collect();
    let folded: f64 = c
        .query_one(
            "SELECT count(*)::float8 FROM \"LiteLLM_SpendLogs\" WHERE NOT (end_user = ANY($1))",
            &[&kept_list],
        )
        .await
        .expect("folded rows")
        .get(0);
    Truth {
        rows: r.get(0),
        spend: r.get(1),
        kept,
        folded_rows: folded,
    }
}

fn folded_rows(s: &Scrape, family: &str) -> f64 {
    s.named("litellm_exporter_folded_rows_total")
        .filter(|x| x.labels.get("family").map(String::as_str) == Some(family))
        .map(|x| x.value)
        .sum()
}

/// Err describes how the scrape differs from the truth.
fn compare(s: &Scrape, t: &Truth) -> Result<(), String> {
    for (family, sample) in FAMILIES {
        let by_user = s.sum_by(sample, "end_user");
        let want = if family == "litellm_spend_metric" {
            t.spend
        } else {
            t.rows
        };
        let got: f64 = by_user.values().sum();
        if !close(got, want, 1e-9) {
            return Err(format!("{sample}: total {got} vs SQL {want}"));
        }
        let users: BTreeSet<String> = by_user.keys().filter(|u| *u != "other").cloned().collect();
        if users != t.kept {
            return Err(format!(
                "{sample}: {} kept series, not the first {CAP} end users by label text",
                users.len()
            ));
        }
        let got = folded_rows(s, family);
        if got != t.folded_rows {
            return Err(format!(
                "{family}: folded_rows_total {got} vs {} rows of folded users in SQL",
                t.folded_rows
            ));
        }
    }
    Ok(())
}

async fn settle(e: &Exporter, c: &tokio_postgres::Client) -> (Scrape, String, Truth) {
    let start = Instant::now();
    loop {
        let t = truth(c).await;
        let (status, body) = e.get("/metrics").await;
        assert_eq!(status, 200, "scrape failed; log:\n{}", e.log_text());
        let s = Scrape::parse(&body);
        match compare(&s, &t) {
            Ok(()) => return (s, body, t),
            Err(why) if start.elapsed() > Duration::from_secs(180) => {
                panic!("never matched the SQL truth: {why}\nlog:\n{}", e.log_text())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Series count, the overflow series' labels, and the family's series shape.
fn assert_capped(s: &Scrape) {
    for (family, sample) in FAMILIES {
        let series: Vec<&BTreeMap<String, String>> = s.named(sample).map(|x| &x.labels).collect();
        assert!(
            series.len() <= CAP + 1,
            "{sample}: {} series over a cap of {CAP}",
            series.len()
        );
        let other: Vec<_> = series
            .iter()
            .filter(|ls| ls.get("end_user").map(String::as_str) == Some("other"))
            .collect();
        assert_eq!(other.len(), 1, "{sample}: one overflow series");
        assert!(
            other[0].values().all(|v| v == "other"),
            "{sample}: every label of the overflow series is \"other\": {:?}",
            other[0]
        );
        let folded = s
            .named("litellm_exporter_folded_series")
            .find(|x| x.labels["family"] == family)
            .map(|x| x.value);
        assert!(
            folded.is_some_and(|n| n >= (USERS as usize - CAP) as f64),
            "{family}: folded_series {folded:?}"
        );
    }
    // Families with no folding would have no overflow series; every bucket line also stays
    // within the cap (one line per bound and per series).
    let buckets = s
        .named("litellm_request_total_latency_metric_bucket")
        .filter(|x| x.labels.get("le").map(String::as_str) == Some("+Inf"))
        .count();
    assert!(buckets <= CAP + 1, "{buckets} histogram series");
}

#[tokio::test]
async fn hundred_thousand_end_users_fold_into_other_exactly() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    insert(&c, "card-", (0, USERS, 10_800), ("eu-", 0, USERS)).await;

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, CONFIG).expect("write config");
    let mut args = FAST.to_vec();
    args.extend(["--config.file", file.to_str().expect("utf8")]);
    let e = Exporter::start(&db.url, &args);
    e.wait_ready(Duration::from_secs(120)).await;

    let (before, body, t) = settle(&e, &c).await;
    assert_eq!(t.rows, USERS as f64);
    assert_eq!(t.folded_rows, (USERS as usize - CAP) as f64);
    assert_capped(&before);
    promtool_check(&body);

    // More rows for users already folded (eu-050000 and on), and one new user sorting before
    // every kept one ('!' < '-'), which displaces the last kept user into "other".
    insert(&c, "more-", (0, 5_000, 1_800), ("eu-", 50_000, 5_000)).await;
    insert(&c, "first-", (0, 3, 60), ("eu!", 0, 1)).await;

    let (after, body, t) = settle(&e, &c).await;
    assert!(t.kept.contains("eu!000000") && !t.kept.contains("eu-000999"));
    assert_capped(&after);
    promtool_check(&body);
    let (b, a) = (before.counters(), after.counters());
    for (series, v) in &b {
        match a.get(series) {
            Some(w) => assert!(w >= v, "{series} went down from {v} to {w}"),
            // Only the displaced user may leave, into "other".
            None => assert!(
                series.contains("eu-000999"),
                "{series} disappeared from the output"
            ),
        }
    }
    let other = |s: &Scrape| {
        s.named("litellm_proxy_total_requests_metric_total")
            .find(|x| x.labels["end_user"] == "other")
            .map(|x| x.value)
            .expect("other")
    };
    // 5000 more folded rows, plus the displaced user's rows.
    let displaced = c
        .query_one(
            "SELECT count(*)::float8 FROM \"LiteLLM_SpendLogs\" WHERE end_user = 'eu-000999'",
            &[],
        )
        .await
        .expect("displaced")
        .get::<_, f64>(0);
    assert_eq!(other(&after), other(&before) + 5_000.0 + displaced);
}
