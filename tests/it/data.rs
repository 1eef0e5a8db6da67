//! Realistic and hostile data: generated LiteLLM traffic (the project's own generator) on the
//! newest and the oldest supported schema, rows with bad numbers and awkward strings, LiteLLM's
//! label conventions, `promtool check metrics`, and the steady-state query plans.

use std::time::Duration;

use crate::seed::{self, SeedOptions};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::{fresh_db, Schema, TestDb};
use super::truth::{insert_row, settle};

/// Runs `promtool check metrics` on an exposition and fails on anything it reports but the
/// naming lint on LiteLLM's own family names.
pub fn promtool_check(body: &str) {
    let report = super::support::promtool::check_metrics(body);
    // promtool both parses and lints. A parse error always fails; lint remarks are accepted only
    // for LiteLLM's own family names, which must stay as they are for its dashboards to work.
    assert!(
        !report.contains("error while linting"),
        "exposition does not parse: {report}"
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let family = line.split_whitespace().next().unwrap_or("");
        assert!(
            LITELLM_LINT_EXCEPTIONS.contains(&family),
            "promtool check metrics: {line}"
        );
    }
}

/// LiteLLM's names that promtool's naming lint dislikes (hours instead of seconds, a gauge
/// ending in _count); kept because dashboards query them by these names.
const LITELLM_LINT_EXCEPTIONS: &[&str] = &[
    "litellm_team_budget_remaining_hours_metric",
    "litellm_api_key_budget_remaining_hours_metric",
    "litellm_user_budget_remaining_hours_metric",
    "litellm_org_budget_remaining_hours_metric",
    "litellm_customer_budget_remaining_hours_metric",
    "litellm_teams_count",
];

async fn seeded(schema: Schema, rows: u64, days: u32) -> (TestDb, tokio_postgres::Client) {
    let db = fresh_db(schema);
    let c = db.client().await;
    let opts = SeedOptions {
        rows,
        days,
        ..Default::default()
    };
    let u = seed::seed_entities(&c, &opts).await.expect("seed entities");
    seed::seed_spend_logs(&c, &opts, &u)
        .await
        .expect("seed rows");
    (db, c)
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> f64 {
    c.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) as f64
}

#[tokio::test]
async fn generated_traffic_matches_sql_and_litellm_conventions() {
    let (db, c) = seeded(Schema::New, 20_000, 10).await;
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(60)).await;
    let s = settle(&e, &c, false).await;
    let (_, body) = e.get("/metrics").await;
    promtool_check(&body);

    // Streams only: time to first token has one observation per successful stream.
    let streams = count(
        &c,
        "SELECT count(*) FROM \"LiteLLM_SpendLogs\" WHERE status IS DISTINCT FROM 'failure'
           AND \"completionStartTime\" < \"endTime\" AND \"completionStartTime\" >= \"startTime\"",
    )
    .await;
    assert!(streams > 0.0);
    assert_eq!(
        s.total("litellm_llm_api_time_to_first_token_metric_count"),
        streams
    );
    let hits = count(
        &c,
        "SELECT count(*) FROM \"LiteLLM_SpendLogs\" WHERE status IS DISTINCT FROM 'failure' AND cache_hit = 'True'",
    )
    .await;
    assert!(hits > 0.0);
    assert_eq!(s.total("litellm_cache_hits_metric_total"), hits);

    // Label conventions.
    let classes = s.sum_by(
        "litellm_proxy_failed_requests_metric_total",
        "exception_class",
    );
    // Provider errors read `<Provider>.<Class>` (Python's str.capitalize() of the provider);
    // errors raised before a provider was chosen keep the bare class, as in LiteLLM.
    assert!(
        classes.keys().any(|c| c.starts_with("Openai.")),
        "{classes:?}"
    );
    for class in classes.keys() {
        assert!(!class.starts_with('.') && !class.is_empty(), "{class:?}");
        if let Some((provider, _)) = class.split_once('.') {
            assert!(
                provider.chars().skip(1).all(|c| !c.is_uppercase()),
                "{class:?}"
            );
        }
    }
    for sample in s.named("litellm_proxy_failed_requests_metric_total") {
        assert_ne!(sample.labels["exception_status"], "");
    }
    for sample in s.named("litellm_spend_metric_total") {
        assert_eq!(
            sample.labels["end_user"], "None",
            "end_user is off by default"
        );
        let model = &sample.labels["model"];
        let provider = &sample.labels["api_provider"];
        assert!(
            !model.starts_with(&format!("{provider}/")),
            "model {model:?} keeps its provider prefix"
        );
    }
    let codes = s.sum_by("litellm_proxy_total_requests_metric_total", "status_code");
    assert!(codes.contains_key("200") && codes.len() > 1, "{codes:?}");
    // Budget gauges exist for every kind of entity the generator made.
    for fam in [
        "litellm_remaining_team_budget_metric",
        "litellm_remaining_api_key_budget_metric",
        "litellm_remaining_user_budget_metric",
        "litellm_remaining_org_budget_metric",
        "litellm_team_max_budget_metric",
        "litellm_total_users",
        "litellm_teams_count",
    ] {
        assert!(s.named(fam).next().is_some(), "{fam} missing");
    }
    assert_eq!(
        s.value("litellm_teams_count"),
        Some(count(&c, "SELECT count(*) FROM \"LiteLLM_TeamTable\"").await)
    );
}

#[tokio::test]
async fn oldest_supported_schema_works() {
    let (db, c) = seeded(Schema::Old, 5_000, 5).await;
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(60)).await;
    let s = settle(&e, &c, true).await;
    assert!(
        s.total("litellm_proxy_failed_requests_metric_total") > 0.0,
        "failures come from metadata on 0.1.1"
    );
    let feature = s
        .named("litellm_exporter_schema_feature")
        .find(|x| x.labels["feature"] == "column:LiteLLM_SpendLogs.status")
        .map(|x| x.value);
    assert_eq!(feature, Some(0.0));
    let (_, body) = e.get("/metrics").await;
    promtool_check(&body);
}

fn all_finite(s: &Scrape) {
    for x in &s.samples {
        assert!(!x.value.is_nan(), "{} is NaN", x.name);
        if x.name.ends_with("_total") || x.name.ends_with("_sum") || x.name.ends_with("_bucket") {
            assert!(
                x.value.is_finite() && x.value >= 0.0,
                "{} = {}",
                x.name,
                x.value
            );
        }
    }
}

#[tokio::test]
async fn hostile_rows_keep_the_exposition_valid_and_finite() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    insert_row(&c, "ok", 5.0, "team-a", 1.0, 10, false).await;
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(30)).await;
    let huge = "x".repeat(1_000_000);
    let hostile: &[(&str, &str)] = &[
        ("nan", "UPDATE \"LiteLLM_SpendLogs\" SET spend = 'NaN' WHERE request_id = 'h-nan'"),
        ("inf", "UPDATE \"LiteLLM_SpendLogs\" SET spend = 'Infinity' WHERE request_id = 'h-inf'"),
        ("neg", "UPDATE \"LiteLLM_SpendLogs\" SET spend = -5, total_tokens = -100, prompt_tokens = -1 WHERE request_id = 'h-neg'"),
        ("md-string", "UPDATE \"LiteLLM_SpendLogs\" SET metadata = '\"just a string\"' WHERE request_id = 'h-md-string'"),
        ("md-null", "UPDATE \"LiteLLM_SpendLogs\" SET metadata = NULL WHERE request_id = 'h-md-null'"),
        ("md-bad", "UPDATE \"LiteLLM_SpendLogs\" SET metadata = '{\"error_information\": [1,2], \"usage_object\": {\"prompt_tokens_details\": {\"cached_tokens\": \"lots\"}}, \"litellm_overhead_time_ms\": \"fast\", \"user_api_key_alias\": {\"nested\": true}}' WHERE request_id = 'h-md-bad'"),
        ("alias", "UPDATE \"LiteLLM_SpendLogs\" SET team_id = E'tab\\there \"q\" back\\\\slash\\nnew\\rline \u{2028} Équipe ☃ 東京', model = E'm\"o\\\\d\\nel' WHERE request_id = 'h-alias'"),
        ("end-inf", "UPDATE \"LiteLLM_SpendLogs\" SET \"endTime\" = 'infinity' WHERE request_id = 'h-end-inf'"),
        ("backwards", "UPDATE \"LiteLLM_SpendLogs\" SET \"endTime\" = \"startTime\" - interval '1 hour' WHERE request_id = 'h-backwards'"),
        ("empty", "UPDATE \"LiteLLM_SpendLogs\" SET team_id = '', model = '', api_key = '' WHERE request_id = 'h-empty'"),
    ];
    for (id, update) in hostile {
        insert_row(&c, &format!("h-{id}"), 3.0, "team-h", 0.5, 5, false).await;
        c.batch_execute(update).await.expect(update);
    }
    c.execute(
        "UPDATE \"LiteLLM_SpendLogs\" SET metadata = jsonb_build_object('user_api_key_alias', $1::text) WHERE request_id = 'h-empty'",
        &[&huge],
    )
    .await
    .expect("huge alias");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = e.get("/metrics").await;
    assert_eq!(status, 200);
    promtool_check(&body);
    let s = Scrape::parse(&body);
    all_finite(&s);
    assert_eq!(
        s.total("litellm_proxy_total_requests_metric_total"),
        1.0 + hostile.len() as f64
    );
    assert!(s.value("litellm_exporter_bad_numbers_total").unwrap_or(0.0) >= 4.0);
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    // The 1 MB alias is capped at 1024 characters in every label; the hostile team id survives
    // escaping intact.
    let longest = s
        .samples
        .iter()
        .flat_map(|x| x.labels.values())
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0);
    assert_eq!(longest, 1024, "the longest label value is the capped alias");
    assert!(body.len() < 400_000, "exposition is {} bytes", body.len());
    let teams = s.sum_by("litellm_proxy_total_requests_metric_total", "team");
    assert!(
        teams
            .keys()
            .any(|t| t.contains("東京") && t.contains("\"q\"") && t.contains("back\\slash")),
        "{teams:?}"
    );
}

/// The plan of `sql` with these parameters, as text.
async fn explain(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    tx.query(&format!("EXPLAIN {sql}"), params)
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn steady_state_reads_use_the_start_time_index() {
    let (_db, mut c) = seeded(Schema::New, 120_000, 30).await;
    c.batch_execute("ANALYZE \"LiteLLM_SpendLogs\"")
        .await
        .expect("analyze");
    let schema = litellm_exporter::schema::Schema::detect(&c)
        .await
        .expect("schema");
    let t = litellm_exporter::ledger::values::Thresholds::new(
        litellm_exporter::catalogue::LATENCY_BUCKETS,
        litellm_exporter::catalogue::DEFAULT_BUCKETS,
    );
    let p = litellm_exporter::ledger::read::Projection::new(
        &schema,
        litellm_exporter::ledger::class::Dims::ALL,
        Default::default(),
        t,
        false,
        &[],
    );
    let snap = c
        .query_one(litellm_exporter::sql::LEDGER_SNAPSHOT, &[])
        .await
        .expect("snapshot");
    let (xmin, xmax): (i64, i64) = (snap.get(0), snap.get(1));
    // The polls' narrowest and widest windows (the defaults), planned as a poll plans them: in a
    // transaction that prefers page order (sql/ledger/window_plan.sql).
    for window in ["2 minutes", "1 hour"] {
        let tx = c.transaction().await.expect("begin");
        tx.batch_execute(litellm_exporter::sql::LEDGER_WINDOW_PLAN)
            .await
            .expect("window plan");
        let lo: String = tx
            .query_one(
                &format!("SELECT to_char((now() AT TIME ZONE 'UTC') - interval '{window}', 'YYYY-MM-DD HH24:MI:SS.MS')"),
                &[],
            )
            .await
            .expect("lo")
            .get(0);
        let plan = explain(&tx, p.rows_sql(), &[&lo, &"infinity", &xmin, &xmax]).await;
        assert!(
            !plan.contains("Seq Scan on \"LiteLLM_SpendLogs\""),
            "{window}: {plan}"
        );
        assert!(
            plan.contains("Bitmap Index Scan on \"LiteLLM_SpendLogs_startTime"),
            "{window}: {plan}"
        );
        // Where a chunk of 10,000 rows ends is found by walking the index in order, in the same
        // transaction (sql/ledger/index_plan.sql undoes the page-order preference first).
        tx.batch_execute(litellm_exporter::sql::LEDGER_INDEX_PLAN)
            .await
            .expect("index plan");
        let plan = explain(&tx, p.chunk_end_sql(), &[&lo, &"infinity", &10_000i64]).await;
        assert!(
            plan.contains("Index Only Scan using \"LiteLLM_SpendLogs_startTime"),
            "{window}: {plan}"
        );
        assert!(!plan.contains("Sort"), "{window}: {plan}");
        tx.rollback().await.expect("rollback");
    }
}
