//! The refresh loop's sources are independent: a spend-log read that fails leaves the entity
//! gauges refreshing, and an entity table that cannot be read leaves the spend-log counters
//! advancing. Each source says how its last read went (`litellm_exporter_source_up{source}`,
//! `litellm_exporter_source_duration_seconds{source}`). The failures are provoked on a real
//! PostgreSQL by a session holding an exclusive lock on one table, with a short statement
//! timeout for the exporter.

use std::time::{Duration, Instant};

use crate::seed::{self, SeedOptions};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::{fresh_db, Schema};
use super::truth::{insert_row, settle};

fn source_up(s: &Scrape, source: &str) -> Option<f64> {
    s.named("litellm_exporter_source_up")
        .find(|x| x.labels.get("source").map(String::as_str) == Some(source))
        .map(|x| x.value)
}

fn error_count(s: &Scrape, kind: &str) -> f64 {
    s.named("litellm_exporter_errors_total")
        .filter(|x| x.labels.get("kind").map(String::as_str) == Some(kind))
        .map(|x| x.value)
        .sum()
}

fn team_gauge(s: &Scrape, name: &str, team: &str) -> Option<f64> {
    s.named(name)
        .find(|x| x.labels.get("team").map(String::as_str) == Some(team))
        .map(|x| x.value)
}

/// Scrapes until `pred` holds, failing after 60 s with the exporter's log.
async fn wait_for(e: &Exporter, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        if pred(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not seen within 60 s; last scrape's sources: replica {:?} ledger {:?} entities {:?}; log:\n{}",
            source_up(&s, "replica"),
            source_up(&s, "ledger"),
            source_up(&s, "entities"),
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An exporter on a seeded database with a 1 s statement timeout, ready and settled.
async fn start() -> (
    super::support::TestDb,
    tokio_postgres::Client,
    Exporter,
    String,
) {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    let opts = SeedOptions {
        rows: 200,
        ..Default::default()
    };
    let u = seed::seed_entities(&c, &opts).await.expect("entities");
    seed::seed_spend_logs(&c, &opts, &u).await.expect("rows");
    let team: String = c
        .query_one(
            r#"SELECT min(team_id) FROM "LiteLLM_TeamTable" WHERE max_budget IS NOT NULL"#,
            &[],
        )
        .await
        .expect("a team with a budget")
        .get(0);
    let e = Exporter::start(
        &db.url,
        &[FAST, &["--db.statement-timeout", "1s"][..]].concat(),
    );
    e.wait_ready(Duration::from_secs(60)).await;
    let s = settle(&e, &c, false).await;
    for source in ["replica", "ledger", "entities"] {
        assert_eq!(source_up(&s, source), Some(1.0), "{source}");
        assert!(
            s.named("litellm_exporter_source_duration_seconds")
                .any(|x| x.labels.get("source").map(String::as_str) == Some(source)),
            "duration of {source}"
        );
    }
    (db, c, e, team)
}

#[tokio::test]
async fn budget_gauges_follow_the_tables_while_the_spend_log_cannot_be_read() {
    let (db, c, e, team) = start().await;
    let s0 = e.scrape().await;
    let requests = s0.total("litellm_proxy_total_requests_metric_total");
    let timeouts = error_count(&s0, "timeout");

    // LiteLLM's partition maintenance, say: the spend log locked for as long as it takes.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute(r#"LOCK TABLE "LiteLLM_SpendLogs" IN ACCESS EXCLUSIVE MODE"#)
        .await
        .expect("lock");
    wait_for(&e, "the ledger source down", |s| {
        source_up(s, "ledger") == Some(0.0)
    })
    .await;
    // Only from now on: any budget seen later was read while the spend log could not be.
    c.execute(
        r#"UPDATE "LiteLLM_TeamTable" SET max_budget = 4242.5, spend = 42.5 WHERE team_id = $1"#,
        &[&team],
    )
    .await
    .expect("edit the team's budget");
    let s = wait_for(&e, "the edited budget", |s| {
        team_gauge(s, "litellm_team_max_budget_metric", &team) == Some(4242.5)
    })
    .await;
    assert_eq!(
        team_gauge(&s, "litellm_remaining_team_budget_metric", &team),
        Some(4200.0)
    );
    assert_eq!(source_up(&s, "ledger"), Some(0.0), "the lock is still held");
    assert_eq!(source_up(&s, "entities"), Some(1.0));
    assert_eq!(source_up(&s, "replica"), Some(1.0));
    assert!(
        error_count(&s, "timeout") > timeouts,
        "the ledger's reads time out"
    );
    assert_eq!(
        s.total("litellm_proxy_total_requests_metric_total"),
        requests,
        "the last counters stay served"
    );
    // A read of the database failed: not "the database answers" in full.
    assert_eq!(s.value("litellm_exporter_database_up"), Some(0.0));

    lock.rollback().await.expect("unlock");
    insert_row(&c, "after-the-lock", 1.0, "team-after", 0.5, 9, false).await;
    let s = settle(&e, &c, false).await;
    assert_eq!(
        s.total("litellm_proxy_total_requests_metric_total"),
        requests + 1.0
    );
    wait_for(&e, "every source up again", |s| {
        ["replica", "ledger", "entities"]
            .iter()
            .all(|x| source_up(s, x) == Some(1.0))
            && s.value("litellm_exporter_database_up") == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn spend_log_counters_advance_while_an_entity_table_cannot_be_read() {
    let (db, c, e, team) = start().await;
    let s0 = e.scrape().await;
    let max_budget = team_gauge(&s0, "litellm_team_max_budget_metric", &team);
    assert!(max_budget.is_some(), "the team's budget gauge");
    let entity_errors = error_count(&s0, "entities");

    let mut locker = db.client().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute(r#"LOCK TABLE "LiteLLM_TeamTable" IN ACCESS EXCLUSIVE MODE"#)
        .await
        .expect("lock");
    wait_for(&e, "the entities source down", |s| {
        source_up(s, "entities") == Some(0.0)
    })
    .await;
    for i in 0..10 {
        insert_row(
            &c,
            &format!("during-{i}"),
            1.0,
            "team-during",
            0.01,
            4,
            i % 3 == 0,
        )
        .await;
    }
    let s = settle(&e, &c, false).await;
    assert_eq!(
        source_up(&s, "entities"),
        Some(0.0),
        "the lock is still held"
    );
    assert_eq!(source_up(&s, "ledger"), Some(1.0));
    assert!(error_count(&s, "entities") > entity_errors);
    assert_eq!(
        team_gauge(&s, "litellm_team_max_budget_metric", &team),
        max_budget,
        "the last budget gauges stay served"
    );
    assert_eq!(s.value("litellm_exporter_database_up"), Some(0.0));

    lock.rollback().await.expect("unlock");
    wait_for(&e, "every source up again", |s| {
        ["replica", "ledger", "entities"]
            .iter()
            .all(|x| source_up(s, x) == Some(1.0))
            && s.value("litellm_exporter_database_up") == Some(1.0)
    })
    .await;
}
