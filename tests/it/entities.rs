//! Budget, limit and count gauges from the entity tables: equal to SQL on every refresh, +Inf
//! for unlimited budgets, gone when the entity is deleted, UI session keys left out.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::seed::{self, SeedOptions};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::{fresh_db, Schema};

fn by(s: &Scrape, name: &str, label: &str) -> BTreeMap<String, f64> {
    s.named(name)
        .map(|x| (x.labels[label].clone(), x.value))
        .collect()
}

async fn sql_map(c: &tokio_postgres::Client, sql: &str) -> BTreeMap<String, f64> {
    c.query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
        .collect()
}

#[tokio::test]
async fn budget_gauges_follow_the_tables() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    let opts = SeedOptions {
        rows: 200,
        ..Default::default()
    };
    let u = seed::seed_entities(&c, &opts).await.expect("entities");
    seed::seed_spend_logs(&c, &opts, &u).await.expect("rows");
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(30)).await;
    let s = e.scrape().await;

    let want = sql_map(
        &c,
        "SELECT team_id, coalesce(max_budget - spend, 'Infinity'::float8) FROM \"LiteLLM_TeamTable\"",
    )
    .await;
    assert_eq!(by(&s, "litellm_remaining_team_budget_metric", "team"), want);
    assert!(
        want.values().any(|v| v.is_infinite()),
        "some team has no budget"
    );
    let want = sql_map(
        &c,
        "SELECT token, max_budget FROM \"LiteLLM_VerificationToken\"
          WHERE max_budget IS NOT NULL AND team_id IS DISTINCT FROM 'litellm-dashboard'",
    )
    .await;
    assert_eq!(
        by(&s, "litellm_api_key_max_budget_metric", "hashed_api_key"),
        want
    );
    let dashboard: Vec<String> = c
        .query(
            "SELECT token FROM \"LiteLLM_VerificationToken\" WHERE team_id = 'litellm-dashboard'",
            &[],
        )
        .await
        .expect("q")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let keys = by(
        &s,
        "litellm_remaining_api_key_budget_metric",
        "hashed_api_key",
    );
    assert!(
        dashboard.iter().all(|t| !keys.contains_key(t)),
        "UI session keys are left out"
    );
    let want = sql_map(
        &c,
        "SELECT o.organization_id, b.max_budget - o.spend FROM \"LiteLLM_OrganizationTable\" o
           JOIN \"LiteLLM_BudgetTable\" b USING (budget_id) WHERE b.max_budget IS NOT NULL",
    )
    .await;
    let got = by(&s, "litellm_remaining_org_budget_metric", "org_id");
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "org {k}");
    }
    // Hours to reset are measured against the database clock.
    let want = sql_map(
        &c,
        "SELECT team_id, (extract(epoch FROM budget_reset_at - (now() AT TIME ZONE 'UTC')) / 3600)::float8
           FROM \"LiteLLM_TeamTable\" WHERE budget_reset_at IS NOT NULL",
    )
    .await;
    let got = by(&s, "litellm_team_budget_remaining_hours_metric", "team");
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert!((got[k] - v).abs() < 0.01, "team {k}: {} vs {v}", got[k]);
    }

    // Edits and deletes show on the next refresh.
    let victim = want.keys().next().expect("a team").clone();
    c.execute(
        "DELETE FROM \"LiteLLM_TeamTable\" WHERE team_id = $1",
        &[&victim],
    )
    .await
    .expect("delete");
    c.execute(
        "UPDATE \"LiteLLM_TeamTable\" SET max_budget = 123.5, spend = 23.5",
        &[],
    )
    .await
    .expect("update");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = e.scrape().await;
    let got = by(&s, "litellm_remaining_team_budget_metric", "team");
    assert!(!got.contains_key(&victim), "deleted team still exported");
    assert!(got.values().all(|v| *v == 100.0), "{got:?}");
    assert_eq!(
        s.value("litellm_teams_count"),
        Some(
            c.query_one("SELECT count(*)::float8 FROM \"LiteLLM_TeamTable\"", &[])
                .await
                .expect("n")
                .get(0)
        )
    );
}
