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
