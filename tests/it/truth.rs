//! The SQL truth the exporter's counters must equal, computed with plain aggregates over
//! `LiteLLM_SpendLogs` (independent of the exporter's own projection), and small helpers that
//! write hand-made rows for the accounting scenarios.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::exporter::{assert_close, close, Exporter, Scrape};

pub struct Truth {
    pub requests_by_team: BTreeMap<String, f64>,
    pub failed_by_team: BTreeMap<String, f64>,
    pub spend_by_team: BTreeMap<String, f64>,
    pub tokens_by_team: BTreeMap<String, f64>,
    pub success_rows: f64,
    pub all_rows: f64,
}

/// `old` = the 0.1.1 schema, which has no status column (failures are marked in metadata).
pub async fn truth(client: &tokio_postgres::Client, old: bool) -> Truth {
    truth_of(client, old, "\"LiteLLM_SpendLogs\"").await
}

/// Every request LiteLLM wrote that is still stored, once: the spend log and the old table
/// LiteLLM's partitioning script moved aside, whose rows may also have been copied into the new
/// one (told apart by request_id alone, unlike the exporter, which also compares startTime); a
/// request in both is taken from the spend log, where LiteLLM may have rewritten it since.
pub const WITH_LEGACY: &str = "(SELECT DISTINCT ON (request_id) * FROM (
        SELECT 0 AS from_legacy, * FROM \"LiteLLM_SpendLogs\"
        UNION ALL SELECT 1, * FROM \"LiteLLM_SpendLogs_legacy\") u
    ORDER BY request_id, from_legacy) s";

/// [`truth`] over the rows of `from` (a FROM item).
pub async fn truth_of(client: &tokio_postgres::Client, old: bool, from: &str) -> Truth {
    let failed = if old {
        "coalesce(metadata->>'status', '') = 'failure'"
    } else {
        "coalesce(status, metadata->>'status', '') = 'failure'"
    };
    let sql = format!(
        "SELECT coalesce(nullif(team_id, ''), 'None'), count(*)::float8,
                (count(*) FILTER (WHERE {failed}))::float8,
                coalesce(sum(spend) FILTER (WHERE NOT ({failed})), 0)::float8,
                coalesce(sum(total_tokens) FILTER (WHERE NOT ({failed})), 0)::float8
         FROM {from} GROUP BY 1"
    );
    let mut t = Truth {
        requests_by_team: BTreeMap::new(),
        failed_by_team: BTreeMap::new(),
        spend_by_team: BTreeMap::new(),
        tokens_by_team: BTreeMap::new(),
        success_rows: 0.0,
        all_rows: 0.0,
    };
    for r in client.query(&sql, &[]).await.expect("truth query") {
        let team: String = r.get(0);
        let (n, f, s, k): (f64, f64, f64, f64) = (r.get(1), r.get(2), r.get(3), r.get(4));
        t.requests_by_team.insert(team.clone(), n);
        if f > 0.0 {
            t.failed_by_team.insert(team.clone(), f);
        }
        if n > f {
            t.spend_by_team.insert(team.clone(), s);
            t.tokens_by_team.insert(team, k);
        }
        t.all_rows += n;
        t.success_rows += n - f;
    }
    t
}

/// Compares a scrape with the truth; Err describes the first difference.
pub fn compare(s: &Scrape, t: &Truth) -> Result<(), String> {
    let checks: [(&str, &str, &BTreeMap<String, f64>, f64); 4] = [
        (
            "litellm_proxy_total_requests_metric_total",
            "team",
            &t.requests_by_team,
            0.0,
        ),
        (
            "litellm_proxy_failed_requests_metric_total",
            "team",
            &t.failed_by_team,
            0.0,
        ),
        ("litellm_spend_metric_total", "team", &t.spend_by_team, 1e-9),
        (
            "litellm_total_tokens_metric_total",
            "team",
            &t.tokens_by_team,
            0.0,
        ),
    ];
    for (name, label, want, tol) in checks {
        let got = s.sum_by(name, label);
        let r = std::panic::catch_unwind(|| assert_close(name, &got, want, tol));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "difference".into());
            return Err(msg);
        }
    }
    let pairs = [
        ("litellm_deployment_total_requests_total", t.all_rows),
        ("litellm_requests_metric_total", t.success_rows),
        ("litellm_request_total_latency_metric_count", t.success_rows),
    ];
    for (name, want) in pairs {
        let got = s.total(name);
        if !close(got, want, 0.0) {
            return Err(format!("{name}: exported {got} vs SQL {want}"));
        }
    }
    Ok(())
}

/// Waits until the exporter's counters equal the SQL truth, then waits three more poll
/// intervals and checks again (a value that only passed through the truth fails).
pub async fn settle(e: &Exporter, client: &tokio_postgres::Client, old: bool) -> Scrape {
    settle_on(e, client, old, "\"LiteLLM_SpendLogs\"").await
}

/// [`settle`] against the truth of the rows of `from` (a FROM item).
pub async fn settle_on(
    e: &Exporter,
    client: &tokio_postgres::Client,
    old: bool,
    from: &str,
) -> Scrape {
    let truth = |c| truth_of(c, old, from);
    let start = Instant::now();
    loop {
        let t = truth(client).await;
        let s = e.scrape().await;
        match compare(&s, &t) {
            Ok(()) => {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let s2 = e.scrape().await;
                if let Err(why) = compare(&s2, &truth(client).await) {
                    panic!("counters moved away from the SQL truth: {why}");
                }
                return s2;
            }
            Err(why) => {
                if start.elapsed() > Duration::from_secs(30) {
                    panic!(
                        "counters never reached the SQL truth: {why}\nlog:\n{}",
                        e.log_text()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Inserts one hand-made spend-log row `secs_ago` seconds before the database clock.
#[allow(clippy::too_many_arguments)]
pub async fn insert_row(
    c: &impl tokio_postgres::GenericClient,
    id: &str,
    secs_ago: f64,
    team: &str,
    spend: f64,
    tokens: i32,
    failed: bool,
) {
    c.execute(
        "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
            prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
            model, model_group, custom_llm_provider, team_id, status, metadata)
         VALUES ($1, 'acompletion', 'hash-test', $2, $3, $3 / 2, $3 - $3 / 2,
            (now() AT TIME ZONE 'UTC') - make_interval(secs => $4),
            (now() AT TIME ZONE 'UTC') - make_interval(secs => $4) + interval '1.5 seconds',
            (now() AT TIME ZONE 'UTC') - make_interval(secs => $4) + interval '1.5 seconds',
            'openai/gpt-4o', 'gpt-4o', 'openai', $5, $6,
            jsonb_build_object('status', $6::text, 'user_api_key_team_alias', 'Team ' || $5))",
        &[
            &id,
            &spend,
            &tokens,
            &secs_ago,
            &team,
            &(if failed { "failure" } else { "success" }),
        ],
    )
    .await
    .expect("insert spend-log row");
}
