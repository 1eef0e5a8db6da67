//! The first minutes tell the truth: a start-up catch-up is not an outage (the database answers,
//! `/-/ready` says how far it is and how long it has left), a database without LiteLLM's tables
//! is its own state with its own message, and a recovery is logged once.

use std::time::{Duration, Instant};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::{fresh_db, Schema};

const READY: Duration = Duration::from_secs(90);

/// A scrape once the exporter listens (it binds within moments of starting).
async fn scrape(e: &Exporter) -> Scrape {
    let start = Instant::now();
    while e.get("/-/healthy").await.0 != 200 {
        assert!(start.elapsed() < READY, "{}", e.log_text());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    e.scrape().await
}

#[tokio::test]
async fn a_catch_up_is_not_an_outage_and_says_how_far_it_is() {
    let db = fresh_db(Schema::New);
    // A century of history, one row a week: about 1,200 catch-up chunks of at most 31 days, so
    // the catch-up is certainly still running when the test holds it halfway with a lock.
    db.psql(
        r#"INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens,
               "startTime", "endTime", model, team_id, status)
           SELECT 'hist-' || i, 'acompletion', 'hash-test', 0.01, 10,
                  (now() AT TIME ZONE 'UTC') - make_interval(days => 7 * i),
                  (now() AT TIME ZONE 'UTC') - make_interval(days => 7 * i) + interval '1 second',
                  'gpt-4o', 'team-a', 'success'
           FROM generate_series(1, 5000) AS i;
           ANALYZE "LiteLLM_SpendLogs";"#,
    );
    let c = db.client().await;
    let mut locker = db.client().await;
    let e = Exporter::start(
        &db.url,
        &[FAST, &["--db.statement-timeout", "60s"][..]].concat(),
    );

    // Wait for the first chunks, then take the table away from the catch-up: the lock waits for
    // the chunk being read and holds every later one.
    let started = Instant::now();
    loop {
        let s = scrape(&e).await;
        let p = s
            .value("litellm_exporter_catch_up_progress_ratio")
            .unwrap_or(0.0);
        assert_ne!(
            s.value("litellm_exporter_ready"),
            Some(1.0),
            "the catch-up ended before it could be observed; log:\n{}",
            e.log_text()
        );
        if p > 0.0 {
            break;
        }
        assert!(started.elapsed() < READY, "{}", e.log_text());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE \"LiteLLM_SpendLogs\" IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    while !Exporter::waits_for_a_lock(&c).await {
        assert!(started.elapsed() < READY, "{}", e.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Held halfway: the database answers, the data is fresh, the exporter is catching up.
    let s = e.scrape().await;
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    assert_eq!(s.value("litellm_exporter_catching_up"), Some(1.0));
    assert_eq!(s.value("litellm_exporter_ready"), Some(0.0));
    assert_eq!(s.value("litellm_exporter_schema_up"), Some(1.0));
    let ratio = s
        .value("litellm_exporter_catch_up_progress_ratio")
        .expect("progress");
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    assert!(
        s.value("litellm_exporter_catch_up_remaining_seconds")
            .expect("remaining")
            >= 0.0
    );
    let last = s
        .value("litellm_exporter_last_refresh_success_timestamp_seconds")
        .expect("last success");
    assert!(last > 0.0, "the catch-up's chunks are successful reads");
    // Nothing of the ledger is served before it is complete.
    assert_eq!(
        s.value("litellm_proxy_total_requests_metric_total"),
        None,
        "ledger families before the catch-up completed"
    );
    let (status, body) = e.get("/-/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("Not ready: catching up: ")
            && body.contains("rows read of about 5,000")
            && body.contains("s left"),
        "{body}"
    );
    let percent: f64 = body["Not ready: catching up: ".len()..]
        .split('%')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {body}"));
    // Held after as little as the first chunk (one row of 5,000: "0.0%"), never done.
    assert!((0.0..100.0).contains(&percent), "{body}");
    let (_, landing) = e.get("/").await;
    assert!(landing.contains("catching up: "), "{landing}");

    lock.commit().await.expect("unlock");
    e.wait_ready(READY).await;
    let s = e.scrape().await;
    assert_eq!(s.value("litellm_exporter_catching_up"), Some(0.0));
    assert_eq!(
        s.value("litellm_exporter_catch_up_progress_ratio"),
        Some(1.0)
    );
    assert_eq!(
        s.value("litellm_exporter_catch_up_remaining_seconds"),
        Some(0.0)
    );
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    assert_eq!(s.total("litellm_proxy_total_requests_metric_total"), 5000.0);
    let (_, landing) = e.get("/").await;
    assert!(
        landing.contains("<td>ready</td>") && landing.contains("gzip"),
        "{landing}"
    );
    // Nothing failed, so nothing recovered.
    assert!(
        !e.log_text().contains("Refreshes succeed again"),
        "{}",
        e.log_text()
    );
}

#[tokio::test]
async fn a_database_without_the_spend_log_is_its_own_state_and_recovers_once() {
    let db = fresh_db(Schema::New);
    // LiteLLM's tables are there but the spend log is not (a migration not run yet, or another
    // application's database): renamed away before the exporter starts.
    db.psql(r#"ALTER TABLE "LiteLLM_SpendLogs" RENAME TO "SpendLogs_elsewhere""#);
    let e = Exporter::start(&db.url, FAST);
    let started = Instant::now();
    let s = loop {
        let s = scrape(&e).await;
        if s.value("litellm_exporter_schema_up") == Some(0.0) {
            break s;
        }
        assert!(started.elapsed() < READY, "{}", e.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        s.value("litellm_exporter_database_up"),
        Some(1.0),
        "the database answers"
    );
    assert_eq!(s.value("litellm_exporter_ready"), Some(0.0));
    let (status, body) = e.get("/-/ready").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("answers but has no LiteLLM spend-log table")
            && body.contains("migrations")
            && !body.contains("does not answer"),
        "{body}"
    );

    db.psql(r#"ALTER TABLE "SpendLogs_elsewhere" RENAME TO "LiteLLM_SpendLogs""#);
    e.wait_ready(READY).await;
    let s = e.scrape().await;
    assert_eq!(s.value("litellm_exporter_schema_up"), Some(1.0));
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    // The recovery is said once, however many refreshes failed before it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = e.log_text();
    assert_eq!(log.matches("Refreshes succeed again").count(), 1, "{log}");
}
