//! Database faults beyond a clean restart (that one is `outage.rs`), each against a real
//! PostgreSQL: a frozen server (SIGSTOP), connections killed mid-refresh, LiteLLM tables renamed
//! away by a migration. In each, `/metrics` keeps answering with the last values, the exporter
//! says what is wrong, nothing piles up, and after recovery the counters equal the SQL truth.
//! The read-replica faults live in `replica.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::{fresh_db, private_cluster, Schema};
use super::truth::{insert_row, settle};

/// The exporter's sessions on database `db`, as the server sees them.
pub async fn exporter_backends(c: &tokio_postgres::Client, db: &str) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity
          WHERE application_name = 'litellm-exporter' AND datname = $1",
        &[&db],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

/// TCP sockets of process `pid` connected to 127.0.0.1:`port` (from /proc: the socket inodes of
/// its descriptors matched against the kernel's TCP table), whatever their state.
pub fn sockets_to(pid: u32, port: u16) -> usize {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&want) && inodes.contains(f[9])
        })
        .count()
}

fn error_count(s: &Scrape, kind: &str) -> f64 {
    s.named("litellm_exporter_errors_total")
        .filter(|x| x.labels.get("kind").map(String::as_str) == Some(kind))
        .map(|x| x.value)
        .sum()
}

fn feature(s: &Scrape, f: &str) -> Option<f64> {
    s.named("litellm_exporter_schema_feature")
        .find(|x| x.labels.get("feature").map(String::as_str) == Some(f))
        .map(|x| x.value)
}

/// Scrapes until `pred` holds, failing after `timeout` with the exporter's log.
async fn wait_for(
    e: &Exporter,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        if pred(&s) {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not seen within {timeout:?}; log:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A frozen server accepts TCP connections but never answers, so neither `statement_timeout`
/// nor a connection error ends a query. The exporter's client-side timeouts must: `/metrics`
/// stays fast, abandoned connections are closed rather than reused, nothing accumulates, and
/// after the thaw the counters are exact.
#[tokio::test]
async fn frozen_database_times_out_and_nothing_piles_up() {
    const POOL: usize = 2;
    let cluster = private_cluster();
    let db = cluster.fresh_db(Schema::New);
    let c = db.client().await;
    for i in 0..50 {
        insert_row(
            &c,
            &format!("before-{i}"),
            5.0 + i as f64,
            "team-a",
            0.01,
            3,
            i % 9 == 0,
        )
        .await;
    }
    // 2 s statement timeout: the step timeout is 2 * 2 s + 2 s (connect) = 6 s.
    let mut args = FAST.to_vec();
    args.extend(["--db.statement-timeout", "2s", "--db.pool-size", "2"]);
    let e = Exporter::start(&db.url, &args);
    e.wait_ready(Duration::from_secs(30)).await;
    let before = settle(&e, &c, false).await;
    drop(c);

    cluster.sigstop();
    let frozen = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut scrapes = 0;
    let mut max_sockets = 0;
    let mut max_pool = 0.0f64;
    let mut last = before.clone();
    // Long enough for several abandoned steps and a few failed connects.
    while frozen.elapsed() < Duration::from_secs(25) {
        let t = Instant::now();
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), e.get("/metrics"))
            .await
            .expect("/metrics hung while the database is frozen");
        let took = t.elapsed();
        assert_eq!(status, 200, "log:\n{}", e.log_text());
        assert!(
            took < Duration::from_secs(1),
            "/metrics took {took:?} while the database is frozen"
        );
        slowest = slowest.max(took);
        scrapes += 1;
        last = Scrape::parse(&body);
        max_pool = max_pool.max(
            last.value("litellm_exporter_pool_connections")
                .unwrap_or(0.0),
        );
        max_sockets = max_sockets.max(sockets_to(e.pid(), cluster.port()));
        assert_eq!(
            last.total("litellm_proxy_total_requests_metric_total"),
            before.total("litellm_proxy_total_requests_metric_total"),
            "the last values stay served"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "frozen 25 s: {scrapes} scrapes, slowest {slowest:?}, at most {max_sockets} sockets to \
         the database, pool gauge at most {max_pool}; errors: timeout {} connect {}, \
         discarded {}",
        error_count(&last, "timeout"),
        error_count(&last, "connect"),
        last.value("litellm_exporter_connections_discarded_total")
            .unwrap_or(0.0)
    );
    assert_eq!(last.value("litellm_exporter_database_up"), Some(0.0));
    assert!(error_count(&last, "timeout") >= 1.0, "a step timed out");
    assert!(
        last.value("litellm_exporter_connections_discarded_total") >= Some(1.0),
        "the timed-out connection was discarded, not pooled"
    );
    assert!(
        max_sockets <= POOL,
        "{max_sockets} sockets to the frozen database (pool size {POOL})"
    );
    assert!(max_pool <= POOL as f64);
    assert_eq!(e.get("/-/ready").await.0, 503);

    cluster.sigcont();
    let c = db.client().await;
    e.wait_ready(Duration::from_secs(60)).await;
    // Sessions from connection attempts queued during the freeze reach the thawed server and
    // end as soon as it reads their closed sockets; then at most the pool remains, for good.
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let n = exporter_backends(&c, &db.name).await;
        seen.push(n);
        if n <= POOL as i64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "exporter sessions after the thaw: {seen:?} (pool size {POOL})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..40 {
        insert_row(
            &c,
            &format!("after-{i}"),
            1.0 + i as f64,
            "team-b",
            0.02,
            4,
            false,
        )
        .await;
        if i % 10 == 0 {
            let n = exporter_backends(&c, &db.name).await;
            assert!(n <= POOL as i64, "{n} exporter sessions after recovery");
        }
    }
    let after = settle(&e, &c, false).await;
    assert_eq!(
        after.total("litellm_proxy_total_requests_metric_total"),
        90.0
    );
    let n = exporter_backends(&c, &db.name).await;
    assert!(n <= POOL as i64, "{n} exporter sessions after recovery");
    eprintln!("after the thaw: exporter sessions {seen:?} then {n}");
}

/// Connections killed with `pg_terminate_backend` in the middle of a refresh, during the
/// start-up catch-up and during polls, while traffic arrives: every failed read is repeated on
/// a fresh connection and nothing is counted twice.
#[tokio::test]
async fn killed_connections_recover_without_double_counting() {
    use crate::seed::{self, SeedOptions};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    let db = fresh_db(Schema::New);
    let c = db.client().await;
    // A history large enough for a catch-up of many chunks.
    let opts = SeedOptions {
        rows: 60_000,
        days: 30,
        ..Default::default()
    };
    let u = seed::seed_entities(&c, &opts).await.expect("entities");
    seed::seed_spend_logs(&c, &opts, &u).await.expect("rows");

    // The killer: terminates every exporter session caught in a transaction or a query, then
    // lets the exporter make progress for a while before the next kill.
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let kills_catch_up = Arc::new(AtomicU32::new(0));
    let kills_polling = Arc::new(AtomicU32::new(0));
    let killer = {
        let (ready, stop) = (ready.clone(), stop.clone());
        let (kc, kp) = (kills_catch_up.clone(), kills_polling.clone());
        let k = db.client().await;
        let name = db.name.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Each kill fails the whole refresh and doubles the exporter's backoff: three
                // kills during the catch-up, then pauses long enough for polls to succeed in
                // between (which resets the backoff).
                let is_ready = ready.load(Ordering::Relaxed);
                if !is_ready && kc.load(Ordering::Relaxed) >= 3 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let killed: i64 = k
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                           FROM pg_stat_activity
                          WHERE application_name = 'litellm-exporter' AND datname = $1
                            AND state IN ('active', 'idle in transaction')",
                        &[&name],
                    )
                    .await
                    .expect("terminate")
                    .get(0);
                if killed > 0 {
                    n += 1;
                    let phase = if is_ready { &kp } else { &kc };
                    phase.fetch_add(killed as u32, Ordering::Relaxed);
                    // Varying pauses: the next kill lands at another point of a refresh.
                    let pause = if is_ready { 1500 } else { 100 };
                    tokio::time::sleep(Duration::from_millis(pause + (n * 137) % 600)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };

    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(180)).await;
    ready.store(true, Ordering::Relaxed);
    // Traffic while the polls are being killed.
    let start = Instant::now();
    let mut i = 0;
    while kills_polling.load(Ordering::Relaxed) < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "only {} polls killed in 90 s",
            kills_polling.load(Ordering::Relaxed)
        );
        insert_row(
            &c,
            &format!("live-{i}"),
            0.5,
            "team-live",
            0.003,
            7,
            i % 5 == 0,
        )
        .await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.expect("killer");
    let s = settle(&e, &c, false).await;
    let errors = s.total("litellm_exporter_errors_total");
    eprintln!(
        "killed {} sessions during the catch-up, {} during polls; {i} live rows; {errors} errors",
        kills_catch_up.load(Ordering::Relaxed),
        kills_polling.load(Ordering::Relaxed)
    );
    assert!(
        kills_catch_up.load(Ordering::Relaxed) >= 1,
        "no session was killed during the catch-up"
    );
    assert!(errors >= 2.0, "the killed reads were counted as errors");
    assert_eq!(
        s.total("litellm_proxy_total_requests_metric_total"),
        60_000.0 + i as f64
    );
}

/// A migration renames LiteLLM tables away and back. While the spend log is gone the exporter
/// serves the last values, reports `errors_total{kind="schema"}`, the table's
/// `schema_feature` goes to 0 and the log names it; rows written meanwhile are counted once it
/// is back. A vanished entity table keeps its last gauges while the spend log keeps counting.
#[tokio::test]
async fn renamed_tables_keep_last_values_and_recover() {
    use crate::seed::{self, SeedOptions};

    let db = fresh_db(Schema::New);
    let c = db.client().await;
    let opts = SeedOptions {
        rows: 300,
        ..Default::default()
    };
    let u = seed::seed_entities(&c, &opts).await.expect("entities");
    seed::seed_spend_logs(&c, &opts, &u).await.expect("rows");
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(30)).await;
    let s0 = settle(&e, &c, false).await;
    let teams = |s: &Scrape| {
        s.named("litellm_remaining_team_budget_metric")
            .map(|x| (x.labels["team"].clone(), x.value))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let teams0 = teams(&s0);
    assert!(!teams0.is_empty(), "team gauges before the migration");
    let schema0 = error_count(&s0, "schema");

    // 1. The spend log renamed away; rows keep arriving in the renamed table.
    db.psql(r#"ALTER TABLE "LiteLLM_SpendLogs" RENAME TO "LiteLLM_SpendLogs_migrating""#);
    let s = wait_for(
        &e,
        "spend log reported missing",
        Duration::from_secs(30),
        |s| {
            error_count(s, "schema") > schema0 && feature(s, "table:LiteLLM_SpendLogs") == Some(0.0)
        },
    )
    .await;
    // The database answers; the missing spend log is its own state.
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    assert_eq!(s.value("litellm_exporter_schema_up"), Some(0.0));
    db.psql(
        r#"INSERT INTO "LiteLLM_SpendLogs_migrating" (request_id, call_type, api_key, spend,
             total_tokens, prompt_tokens, completion_tokens, "startTime", "endTime",
             "completionStartTime", model, model_group, custom_llm_provider, team_id, status,
             metadata)
           SELECT 'during-' || g, 'acompletion', 'hash-test', 0.03, 5, 2, 3,
                  (now() AT TIME ZONE 'UTC') - interval '3 seconds',
                  (now() AT TIME ZONE 'UTC') - interval '1 second',
                  (now() AT TIME ZONE 'UTC') - interval '1 second',
                  'openai/gpt-4o', 'gpt-4o', 'openai', 'team-migrating', 'success',
                  '{"status": "success"}'::jsonb
             FROM generate_series(1, 25) AS g"#,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = e.scrape().await;
    assert_eq!(
        s.counters(),
        s0.counters(),
        "the last values stay served while the spend log is missing"
    );
    assert_eq!(teams(&s), teams0);
    let log = e.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("LiteLLM_SpendLogs") && l.contains("missing")),
        "a log line names the missing table:\n{log}"
    );
    db.psql(r#"ALTER TABLE "LiteLLM_SpendLogs_migrating" RENAME TO "LiteLLM_SpendLogs""#);
    wait_for(&e, "spend log back", Duration::from_secs(60), |s| {
        feature(s, "table:LiteLLM_SpendLogs") == Some(1.0)
            && s.value("litellm_exporter_database_up") == Some(1.0)
    })
    .await;
    let s1 = settle(&e, &c, false).await;
    assert_eq!(s1.total("litellm_proxy_total_requests_metric_total"), 325.0);

    // 2. An entity table renamed away: its gauges keep their last values, the spend log keeps
    // counting, and an edit made meanwhile shows once the table is back.
    let schema1 = error_count(&s1, "schema");
    db.psql(r#"ALTER TABLE "LiteLLM_TeamTable" RENAME TO "LiteLLM_TeamTable_migrating""#);
    wait_for(
        &e,
        "team table reported missing",
        Duration::from_secs(30),
        |s| {
            error_count(s, "schema") > schema1 && feature(s, "table:LiteLLM_TeamTable") == Some(0.0)
        },
    )
    .await;
    db.psql(r#"UPDATE "LiteLLM_TeamTable_migrating" SET spend = spend + 1"#);
    for i in 0..10 {
        insert_row(
            &c,
            &format!("entities-gone-{i}"),
            1.0,
            "team-x",
            0.01,
            2,
            false,
        )
        .await;
    }
    let s = settle(&e, &c, false).await;
    assert_eq!(teams(&s), teams0, "team gauges keep their last values");
    assert_eq!(s.value("litellm_exporter_database_up"), Some(0.0));
    let log = e.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("LiteLLM_TeamTable") && l.contains("disappeared")),
        "a log line names the vanished table:\n{log}"
    );
    db.psql(r#"ALTER TABLE "LiteLLM_TeamTable_migrating" RENAME TO "LiteLLM_TeamTable""#);
    let want: std::collections::BTreeMap<String, f64> = c
        .query(
            r#"SELECT team_id, coalesce(max_budget - spend, 'Infinity'::float8)
                 FROM "LiteLLM_TeamTable""#,
            &[],
        )
        .await
        .expect("teams")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_ne!(want, teams0, "the edit changed the budgets");
    wait_for(
        &e,
        "team gauges after the table is back",
        Duration::from_secs(60),
        |s| {
            teams(s) == want
                && feature(s, "table:LiteLLM_TeamTable") == Some(1.0)
                && s.value("litellm_exporter_database_up") == Some(1.0)
        },
    )
    .await;
    settle(&e, &c, false).await;
}
