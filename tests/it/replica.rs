//! The exporter on a streaming hot-standby replica, with the traffic on the primary: counters
//! equal the primary's SQL truth once replayed; reads cancelled by recovery conflicts are
//! counted as `errors_total{kind="conflict"}` and repeated without loss; a paused replay shows
//! in the lag self-metrics while the values stay consistent with what the replica holds.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::seed::{self, SeedOptions};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::{private_cluster, Schema};
use super::truth::{insert_row, settle};

fn conflicts(s: &Scrape) -> f64 {
    s.named("litellm_exporter_errors_total")
        .filter(|x| x.labels.get("kind").map(String::as_str) == Some("conflict"))
        .map(|x| x.value)
        .sum()
}

/// Recovery conflicts the replica's server counted for database `db`.
async fn server_conflicts(c: &tokio_postgres::Client, db: &str) -> i64 {
    c.query_one(
        "SELECT (confl_lock + confl_snapshot + confl_bufferpin + confl_deadlock
                 + confl_tablespace)::bigint
           FROM pg_stat_database_conflicts WHERE datname = $1",
        &[&db],
    )
    .await
    .expect("pg_stat_database_conflicts")
    .get(0)
}

#[tokio::test]
async fn replica_counts_exactly_through_conflicts_and_paused_replay() {
    let primary = private_cluster();
    let pdb = primary.fresh_db(Schema::New);
    let pc = pdb.client().await;
    // A history whose catch-up reads last long enough to meet conflicts.
    let opts = SeedOptions {
        rows: 100_000,
        days: 30,
        ..Default::default()
    };
    let u = seed::seed_entities(&pc, &opts).await.expect("entities");
    seed::seed_spend_logs(&pc, &opts, &u).await.expect("rows");
    // Queries in the way of replay are cancelled at once.
    let replica = primary.replica("max_standby_streaming_delay = 0\nhot_standby_feedback = off");
    let rdb = replica.db(&pdb.name);
    let rc = rdb.client().await;

    // On the primary, what makes replay conflict with the exporter's reads: an ACCESS EXCLUSIVE
    // lock (replayed as a lock on the standby), and rewritten old rows removed by VACUUM
    // (replayed as the removal of versions the exporter's snapshot may still see). Neither
    // changes what is counted: the rewrite keeps every value.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU32::new(0));
    let provoker = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        let p = pdb.client().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                p.batch_execute(
                    r#"BEGIN;
                       LOCK TABLE "LiteLLM_SpendLogs" IN ACCESS EXCLUSIVE MODE;
                       SELECT pg_sleep(0.05);
                       COMMIT;"#,
                )
                .await
                .expect("lock");
                p.batch_execute(
                    r#"UPDATE "LiteLLM_SpendLogs" SET cache_key = cache_key
                        WHERE ctid = ANY (ARRAY(SELECT ctid FROM "LiteLLM_SpendLogs"
                                                 WHERE "startTime" < now() - interval '2 hours'
                                                 ORDER BY random() LIMIT 500))"#,
                )
                .await
                .expect("update");
                // On its own: VACUUM cannot run in the implicit transaction of a batch.
                p.batch_execute(r#"VACUUM "LiteLLM_SpendLogs""#)
                    .await
                    .expect("vacuum");
                rounds.fetch_add(1, Ordering::Relaxed);
                // Spaced out, so that reads between two rounds complete and the catch-up moves on.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
        })
    };

    let e = Exporter::start(&rdb.url, FAST);
    e.wait_ready(Duration::from_secs(300)).await;
    // Live traffic on the primary while the polls meet conflicts too.
    for i in 0..60 {
        insert_row(
            &pc,
            &format!("live-{i}"),
            1.0,
            "team-live",
            0.004,
            6,
            i % 6 == 0,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    provoker.await.expect("provoker");
    replica.wait_replayed(&primary);
    let s = settle(&e, &pc, false).await;
    let server = server_conflicts(&rc, &rdb.name).await;
    eprintln!(
        "{} provoking rounds; the replica cancelled {server} reads, the exporter counted {} \
         conflicts",
        rounds.load(Ordering::Relaxed),
        conflicts(&s)
    );
    assert!(
        server >= 1,
        "the replica cancelled no read: no conflict was provoked"
    );
    assert!(
        conflicts(&s) >= 1.0,
        "conflicts are counted as kind=\"conflict\""
    );
    assert_eq!(
        s.total("litellm_proxy_total_requests_metric_total"),
        100_060.0
    );
    assert_eq!(s.value("litellm_exporter_database_in_recovery"), Some(1.0));
    assert_eq!(
        s.value("litellm_exporter_replica_wal_receiver_up"),
        Some(1.0)
    );
    assert_eq!(s.value("litellm_exporter_replica_replay_paused"), Some(0.0));

    // Replay paused: new rows reach the replica's WAL but not its tables. The lag grows, and
    // the counters equal what the replica shows, not the primary.
    rdb.psql("SELECT pg_wal_replay_pause()");
    for i in 0..30 {
        insert_row(
            &pc,
            &format!("paused-{i}"),
            1.0,
            "team-live",
            0.004,
            6,
            false,
        )
        .await;
    }
    primary.psql("postgres", "SELECT pg_switch_wal()");
    let lagging = |s: &Scrape| {
        s.value("litellm_exporter_replica_replay_paused") == Some(1.0)
            && s.value("litellm_exporter_replica_replay_lag_bytes") > Some(0.0)
            && s.value("litellm_exporter_replica_replay_lag_seconds") > Some(0.0)
    };
    let start = Instant::now();
    let first = loop {
        let s = e.scrape().await;
        if lagging(&s) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no lag shown while replay is paused; log:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = e.scrape().await;
    let (l1, l2) = (
        first
            .value("litellm_exporter_replica_replay_lag_seconds")
            .unwrap_or(0.0),
        later
            .value("litellm_exporter_replica_replay_lag_seconds")
            .unwrap_or(0.0),
    );
    eprintln!(
        "paused replay: lag {l1:.1} s then {l2:.1} s, {} bytes",
        later
            .value("litellm_exporter_replica_replay_lag_bytes")
            .unwrap_or(0.0)
    );
    assert!(
        l2 >= l1 + 2.0,
        "the lag grows while replay is paused: {l1} then {l2}"
    );
    let stale = settle(&e, &rc, false).await;
    assert_eq!(
        stale.total("litellm_proxy_total_requests_metric_total"),
        100_060.0,
        "the counters show what the replica holds"
    );

    rdb.psql("SELECT pg_wal_replay_resume()");
    replica.wait_replayed(&primary);
    let s = settle(&e, &pc, false).await;
    assert_eq!(
        s.total("litellm_proxy_total_requests_metric_total"),
        100_090.0
    );
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        if s.value("litellm_exporter_replica_replay_paused") == Some(0.0)
            && s.value("litellm_exporter_replica_replay_lag_seconds") < Some(5.0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "lag stays after resume"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(e);
    drop(rc);
    drop(replica);
}
