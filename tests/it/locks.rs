//! The proxy's side: while the exporter catches up and polls, LiteLLM's inserts and its retention
//! deletes run and finish; no exporter session ever blocks them, and every lock an exporter
//! session holds is one that cannot block a writer (ACCESS SHARE on relations, its own
//! transaction and virtual transaction ids).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exporter::Exporter;
use super::support::{fresh_db, Schema};

/// Rows spread over the last 30 days, so that retention deletes have something to delete and the
/// catch-up takes long enough to overlap with the writers.
const HISTORY: i64 = 120_000;

pub(super) fn bulk_insert(prefix: &str, n: i64, days: i64) -> String {
    format!(
        "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
            prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
            model, team_id, status, metadata)
         SELECT '{prefix}-' || g, 'acompletion', 'hash-' || (g % 50), 0.001 * (g % 7), 10, 5, 5,
                t, t + interval '1 second', t + interval '1 second', 'gpt-4o', 'team-' || (g % 5),
                'success', jsonb_build_object('user_api_key_alias', 'alias-' || (g % 50))
         FROM generate_series(1, {n}) g,
              LATERAL (SELECT (now() AT TIME ZONE 'UTC')
                              - make_interval(secs => ({days} * 86400.0) * g / {n}) AS t) x"
    )
}

#[derive(Default, Debug)]
struct Observed {
    samples: u64,
    /// Samples in which an exporter session held at least one lock.
    with_exporter_locks: u64,
    modes: BTreeSet<(String, String)>,
    /// Writer sessions seen waiting on an exporter session.
    blocked_by_exporter: u64,
}

#[tokio::test]
async fn inserts_and_retention_deletes_are_never_blocked() {
    let db = fresh_db(Schema::New);
    db.psql(&bulk_insert("hist", HISTORY, 30));

    let stop = Arc::new(AtomicBool::new(false));
    // The monitor samples pg_locks as fast as it can from the moment the exporter starts.
    let monitor = {
        let stop = stop.clone();
        let c = db.client().await;
        tokio::spawn(async move {
            let mut o = Observed::default();
            while !stop.load(Ordering::Relaxed) {
                let locks = c
                    .query(
                        "SELECT l.locktype, l.mode, l.granted, l.relation::regclass::text,
                                l.transactionid::text, a.backend_xid::text
                         FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                         WHERE a.application_name = 'litellm-exporter'
                           AND a.datname = current_database()",
                        &[],
                    )
                    .await
                    .expect("read pg_locks");
                let blocked: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity w
                         WHERE w.application_name = 'litellm-proxy'
                           AND EXISTS (SELECT 1 FROM pg_stat_activity b
                                       WHERE b.pid = ANY (pg_blocking_pids(w.pid))
                                         AND b.application_name = 'litellm-exporter')",
                        &[],
                    )
                    .await
                    .expect("read pg_blocking_pids")
                    .get(0);
                o.samples += 1;
                o.blocked_by_exporter += blocked as u64;
                if !locks.is_empty() {
                    o.with_exporter_locks += 1;
                }
                for l in locks {
                    let locktype: String = l.get(0);
                    let mode: String = l.get(1);
                    let relation: Option<String> = l.get(3);
                    o.modes
                        .insert((format!("{locktype}:{}", relation.unwrap_or_default()), mode));
                }
            }
            o
        })
    };
    let e = Exporter::start(
        &db.url,
        &["--poll-interval", "100ms", "--ledger.recent-window", "1h"],
    );

    // LiteLLM's side: batched inserts of new rows (as its spend-log writer does) and retention
    // deletes moving forward a day at a time, each with a lock_timeout so that a blocked
    // statement fails instead of hanging the test.
    let writer = {
        let c = db.client().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            c.batch_execute("SET application_name = 'litellm-proxy'; SET lock_timeout = '5s'")
                .await
                .expect("session settings");
            let mut batches = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sql = bulk_insert(&format!("live-{batches}"), 200, 0);
                c.batch_execute(&sql)
                    .await
                    .expect("a LiteLLM insert failed");
                batches += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            batches
        })
    };
    let deleter = {
        let c = db.client().await;
        tokio::spawn(async move {
            c.batch_execute("SET application_name = 'litellm-proxy'; SET lock_timeout = '5s'")
                .await
                .expect("session settings");
            let mut deleted = 0u64;
            let mut slowest = Duration::ZERO;
            for keep_days in (20..30).rev() {
                let t = Instant::now();
                deleted += c
                    .execute(
                        &format!(
                            "DELETE FROM \"LiteLLM_SpendLogs\"
                             WHERE \"startTime\" < (now() AT TIME ZONE 'UTC') - interval '{keep_days} days'"
                        ),
                        &[],
                    )
                    .await
                    .expect("a retention delete failed");
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            (deleted, slowest)
        })
    };

    e.wait_ready(Duration::from_secs(120)).await;
    let (deleted, slowest_delete) = deleter.await.expect("deleter");
    // A few more polls with the writer still going.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let batches = writer.await.expect("writer");
    let o = monitor.await.expect("monitor");
    eprintln!(
        "locks: {} samples, {} with exporter locks ({} distinct), deleted {deleted} rows (slowest delete {slowest_delete:?}), {batches} insert batches",
        o.samples,
        o.with_exporter_locks,
        o.modes.len()
    );

    assert!(deleted > 0, "the retention deletes deleted nothing");
    assert!(batches > 10, "too few insert batches ran: {batches}");
    assert!(
        o.with_exporter_locks > 0,
        "the monitor never saw the exporter inside a transaction ({} samples): the test proved nothing",
        o.samples
    );
    assert_eq!(
        o.blocked_by_exporter, 0,
        "a LiteLLM writer waited on an exporter session"
    );
    for (what, mode) in &o.modes {
        // Besides its reads' ACCESS SHARE and its own transaction ids: the lock on the database
        // object that every session takes while it starts (a pool session opened mid-test),
        // which conflicts only with DROP DATABASE.
        let harmless = mode == "AccessShareLock"
            || (mode == "ExclusiveLock"
                && (what.starts_with("virtualxid:") || what.starts_with("transactionid:")))
            || (mode == "RowExclusiveLock" && what == "object:");
        assert!(
            harmless,
            "the exporter held {mode} on {what}, which can block LiteLLM's writers"
        );
    }
    assert!(
        o.modes.iter().any(|(w, _)| w.contains("LiteLLM_SpendLogs")),
        "never saw the exporter reading the spend log: {:?}",
        o.modes
    );
    let s = e.scrape().await;
    let ingested = s
        .value("litellm_exporter_rows_ingested_total")
        .unwrap_or(0.0);
    assert!(
        ingested >= HISTORY as f64 - deleted as f64,
        "rows ingested {ingested} < rows that were never deleted"
    );
}
