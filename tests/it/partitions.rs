//! LiteLLM's partitioned spend log (`db_scripts/partition_spend_logs.sql`, with its cleanup
//! job's partition maintenance), against the real migrations: the accounting scenarios on that
//! layout; the conversion and its undoing while the exporter runs and across restarts, with and
//! without the optional copy of recent rows; retention by dropping partitions; LiteLLM's inserts
//! while partitions are created and dropped under a catching-up and a polling exporter; and the
//! partitions a poll reads. The conversion scripts are ours, taking LiteLLM's steps
//! (`tests/support/litellm/`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use litellm_exporter::catalogue::{DEFAULT_BUCKETS, LATENCY_BUCKETS};
use litellm_exporter::ledger::class::Dims;
use litellm_exporter::ledger::read::Projection;
use litellm_exporter::ledger::values::Thresholds;
use litellm_exporter::schema::Schema as LiteLlmSchema;

use super::accounting;
use super::exporter::{Exporter, Scrape, FAST};
use super::locks::bulk_insert;
use super::support::{fresh_db, Schema, TestDb};
use super::truth::{insert_row, settle_on, WITH_LEGACY};

const PARTITION: &str = include_str!("../support/litellm/partition_spend_logs.sql");
const BACKFILL: &str = include_str!("../support/litellm/backfill_spend_logs.sql");
const UNPARTITION: &str = include_str!("../support/litellm/unpartition_spend_logs.sql");
const SPEND_LOGS: &str = "\"LiteLLM_SpendLogs\"";

/// Which spend log a scenario runs on.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// LiteLLM's default: one table.
    Plain,
    /// After LiteLLM's partitioning script, with the cleanup job's daily partitions from
    /// yesterday to a week ahead: older rows land in the DEFAULT partition, as rows written
    /// before the job's first run do.
    Partitioned,
}

impl Layout {
    pub fn fresh_db(self) -> TestDb {
        let db = fresh_db(Schema::New);
        if let Layout::Partitioned = self {
            db.psql(PARTITION);
            db.psql(&partition_job(-1, 7));
        }
        db
    }
}

/// The cleanup job's partition creation: one partition per UTC day from `from` to `to` days
/// from today, named as LiteLLM names them, created if missing, with the job's lock timeout.
fn partition_job(from: i32, to: i32) -> String {
    format!(
        "SET lock_timeout = '300s';
         DO $$
         DECLARE d date;
         BEGIN
           FOR i IN {from}..{to} LOOP
             d := (now() AT TIME ZONE 'UTC')::date + i;
             EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF \"LiteLLM_SpendLogs\" FOR VALUES FROM (%L) TO (%L)',
                            'LiteLLM_SpendLogs_p' || to_char(d, 'YYYYMMDD'), d, d + 1);
           END LOOP;
         END $$;"
    )
}

/// The cleanup job's retention: drops the daily partitions that end at or before `cutoff`
/// (an SQL timestamp expression), then deletes the rows before it left in the others
/// (the DEFAULT partition, the one spanning the cutoff). Returns how many partitions it dropped.
async fn retention_job(c: &tokio_postgres::Client, cutoff: &str) -> usize {
    c.batch_execute("SET lock_timeout = '300s'")
        .await
        .expect("lock_timeout");
    let expired: Vec<String> = c
        .query(
            &format!(
                "SELECT child.relname::text
                 FROM pg_inherits i
                 JOIN pg_class child ON child.oid = i.inhrelid
                 WHERE i.inhparent = '{SPEND_LOGS}'::regclass
                   AND child.relname::text ~ '^LiteLLM_SpendLogs_p[0-9]{{8}}$'
                   AND to_date(substr(child.relname::text, 20), 'YYYYMMDD') + 1 <= ({cutoff})::date"
            ),
            &[],
        )
        .await
        .expect("expired partitions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for p in &expired {
        c.batch_execute(&format!("DROP TABLE \"{p}\""))
            .await
            .expect("drop partition");
    }
    c.execute(
        &format!("DELETE FROM {SPEND_LOGS} WHERE \"startTime\" < {cutoff}"),
        &[],
    )
    .await
    .expect("delete leftovers");
    expired.len()
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

/// No counter of `before` is lower (or gone) in `after`.
fn none_went_down(before: &BTreeMap<String, f64>, after: &Scrape, when: &str) {
    let after = after.counters();
    for (k, v) in before {
        let now = after.get(k).copied().unwrap_or(f64::NAN);
        assert!(now >= *v, "{when}: {k} went from {v} to {now}");
    }
}

/// History for the conversion scenarios: 240 rows over the last four hours (all inside the
/// default one-hour lateness window's reach of a later read, and older), several teams.
async fn history(c: &tokio_postgres::Client) {
    for i in 0..240 {
        let team = ["team-a", "team-b", "", "team-c"][i % 4];
        insert_row(
            c,
            &format!("hist-{i}"),
            30.0 + i as f64 * 60.0,
            team,
            0.001 * (i as f64 + 1.0),
            10 + i as i32,
            i % 11 == 0,
        )
        .await;
    }
}

/// LiteLLM's writer while a scenario runs: a row every 15 ms, dated now, until `stop`.
fn writer(
    db: &TestDb,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let db = db.clone();
    tokio::spawn(async move {
        let c = db.client().await;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            insert_row(
                &c,
                &format!("{prefix}-{n}"),
                0.5,
                "team-w",
                0.01,
                7,
                n % 5 == 0,
            )
            .await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        n
    })
}

/// The exporter's counters equal the distinct requests of the spend log and the legacy table.
async fn settle_all(e: &Exporter, c: &tokio_postgres::Client) -> Scrape {
    let legacy: bool = c
        .query_one(
            "SELECT to_regclass('\"LiteLLM_SpendLogs_legacy\"') IS NOT NULL",
            &[],
        )
        .await
        .expect("legacy?")
        .get(0);
    let from = if legacy { WITH_LEGACY } else { SPEND_LOGS };
    settle_on(e, c, false, from).await
}

/// Converts while the exporter runs and LiteLLM writes, restarts from the state file, undoes the
/// conversion while it runs, and finally rebuilds without a state file: every counter equals
/// the distinct requests stored at each step and never goes down.
async fn conversion_scenario(backfill: bool) {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    history(&c).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let before = settle_all(&e, &c).await.counters();

    // Converted under a running writer: rows committed to the old table just before the
    // rename are found there, those after it in the new table.
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&db, "live", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.psql(PARTITION);
    if backfill {
        db.psql(BACKFILL);
    }
    // The cleanup job's first run: partitions for the days ahead (today's rows sit in DEFAULT,
    // which LiteLLM's job then leaves alone for today).
    db.psql(&partition_job(1, 7));
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let written = w.await.expect("writer");
    assert!(written > 20, "the writer wrote too little: {written}");
    let copied: i64 = c
        .query_one(
            "SELECT count(*) FROM \"LiteLLM_SpendLogs\" s
             WHERE EXISTS (SELECT 1 FROM \"LiteLLM_SpendLogs_legacy\" l WHERE l.request_id = s.request_id)",
            &[],
        )
        .await
        .expect("copied")
        .get(0);
    assert_eq!(copied > 0, backfill, "copied rows: {copied}");
    let converted = settle_all(&e, &c).await;
    none_went_down(&before, &converted, "after the conversion");
    let converted = converted.counters();

    // A restart from the state file after LiteLLM replaced the table: the file is kept.
    assert_eq!(e.stop(), 0);
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let resumed = settle_all(&e, &c).await;
    assert_eq!(
        resumed.counters(),
        converted,
        "a restart changed the counters"
    );
    assert!(
        !e.log_text().contains("another database"),
        "the state file was discarded after LiteLLM's table replacement:\n{}",
        e.log_text()
    );

    // Undone while running and writing: every row is copied again into a plain table.
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&db, "again", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.psql(UNPARTITION);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    w.await.expect("writer");
    let unpartitioned = settle_all(&e, &c).await;
    none_went_down(&converted, &unpartitioned, "after unpartitioning");
    let unpartitioned = unpartitioned.counters();
    assert_eq!(e.stop(), 0);

    // A rebuild while the legacy table is still there: its rows that are nowhere else count,
    // once, and to the same values.
    let e = Exporter::start(&db.url, &args(&[]));
    e.wait_ready(Duration::from_secs(30)).await;
    let rebuilt = settle_all(&e, &c).await;
    assert_eq!(rebuilt.counters(), unpartitioned, "a rebuild differs");
}

#[tokio::test]
async fn conversion_and_undoing_it_while_running_count_every_row_once() {
    conversion_scenario(false).await;
}

#[tokio::test]
async fn conversion_with_the_optional_copy_counts_copied_rows_once() {
    conversion_scenario(true).await;
}

#[tokio::test]
async fn a_rebuild_counts_rows_only_in_the_legacy_table_once() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    history(&c).await;
    db.psql(PARTITION);
    db.psql(BACKFILL);
    // Rows written after the conversion, and one request rewritten in the new table (its copy
    // in the legacy table keeps the old values: the new table's row is the one that counts).
    for i in 0..30 {
        insert_row(
            &c,
            &format!("new-{i}"),
            5.0 + i as f64,
            "team-n",
            0.5,
            3,
            false,
        )
        .await;
    }
    c.execute(
        "UPDATE \"LiteLLM_SpendLogs\" SET spend = spend + 1 WHERE request_id = 'hist-3'",
        &[],
    )
    .await
    .expect("rewrite");
    let e = Exporter::start(&db.url, &args(&[]));
    e.wait_ready(Duration::from_secs(30)).await;
    let s = settle_all(&e, &c).await;
    let requests = s.total("litellm_proxy_total_requests_metric_total");
    assert_eq!(
        requests, 270.0,
        "240 old requests and 30 new ones, each once"
    );
}

#[tokio::test]
async fn retention_by_dropping_partitions_never_lowers_a_counter() {
    let db = fresh_db(Schema::New);
    db.psql(PARTITION);
    let c = db.client().await;
    // Three days of rows written before the cleanup job's first run: all in DEFAULT.
    c.batch_execute(&bulk_insert("default", 3000, 3))
        .await
        .expect("rows in DEFAULT");
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM \"LiteLLM_SpendLogs_pdefault\"", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(in_default, 3000);
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(60)).await;
    // The job's partitions ahead, then rows in them (tomorrow's partition receives rows dated
    // a few hours ahead: a skewed clock).
    db.psql(&partition_job(1, 7));
    for i in 0..20 {
        insert_row(
            &c,
            &format!("ahead-{i}"),
            -(86400.0 + 60.0 * i as f64),
            "team-f",
            0.2,
            5,
            false,
        )
        .await;
    }
    let before = settle_all(&e, &c).await.counters();

    // Partitions of days before the cutoff dropped, leftovers deleted (from DEFAULT, here).
    retention_job(&c, "(now() AT TIME ZONE 'UTC') + interval '3 days'").await;
    let left: i64 = c
        .query_one("SELECT count(*) FROM \"LiteLLM_SpendLogs\"", &[])
        .await
        .expect("count")
        .get(0);
    assert!(left < 10, "the retention job left {left} rows");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        e.scrape().await.counters(),
        before,
        "retention changed the counters"
    );
    assert_eq!(e.stop(), 0);
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        e.scrape().await.counters(),
        before,
        "a restart after retention changed the counters"
    );
    // New rows add exactly their own values.
    insert_row(&c, "after-retention", 1.0, "team-a", 2.0, 20, false).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let spend_before: f64 = before
        .iter()
        .filter(|(k, _)| k.starts_with("litellm_spend_metric_total"))
        .map(|(_, v)| v)
        .sum();
    let spend_now = e.scrape().await.total("litellm_spend_metric_total");
    assert!(
        (spend_now - spend_before - 2.0).abs() < 1e-9,
        "{spend_now} vs {spend_before} + 2"
    );
}

/// Longest statement time of LiteLLM's inserts and of its partition DDL.
#[derive(Debug, Default)]
struct Waits {
    inserts: u64,
    longest_insert: Duration,
    ddl: u64,
    longest_ddl: Duration,
}

#[tokio::test]
async fn partition_maintenance_never_waits_long_on_the_exporter() {
    let db = fresh_db(Schema::New);
    db.psql(PARTITION);
    db.psql(&partition_job(-31, 1));
    let c = db.client().await;
    // Enough history that the catch-up's chunks (about 2 s each) overlap the maintenance.
    c.batch_execute(&bulk_insert("hist", 400_000, 30))
        .await
        .expect("history");
    c.batch_execute("ANALYZE \"LiteLLM_SpendLogs\"")
        .await
        .expect("analyze");

    let stop = Arc::new(AtomicBool::new(false));
    let waits = Arc::new(std::sync::Mutex::new(Waits::default()));
    // LiteLLM's spend-log writer.
    let inserts = {
        let (db, stop, waits) = (db.clone(), stop.clone(), waits.clone());
        tokio::spawn(async move {
            let c = db.client().await;
            c.batch_execute("SET application_name = 'litellm-proxy'")
                .await
                .expect("name");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.batch_execute(&bulk_insert(&format!("live-{n}"), 20, 0))
                    .await
                    .expect("a LiteLLM insert failed");
                {
                    let mut w = waits.lock().expect("waits");
                    w.inserts += 1;
                    w.longest_insert = w.longest_insert.max(t.elapsed());
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // LiteLLM's cleanup job, far more often than its daily run: a partition created ahead and
    // one dropped, every second.
    let maintenance = {
        let (db, stop, waits) = (db.clone(), stop.clone(), waits.clone());
        tokio::spawn(async move {
            let c = db.client().await;
            c.batch_execute("SET application_name = 'litellm-proxy'; SET lock_timeout = '300s'")
                .await
                .expect("settings");
            while !stop.load(Ordering::Relaxed) {
                for ddl in [
                    "CREATE TABLE IF NOT EXISTS \"LiteLLM_SpendLogs_p29991231\" PARTITION OF \"LiteLLM_SpendLogs\" FOR VALUES FROM ('2999-12-31') TO ('3000-01-01')",
                    "DROP TABLE IF EXISTS \"LiteLLM_SpendLogs_p29991231\"",
                ] {
                    let t = Instant::now();
                    c.batch_execute(ddl).await.expect("partition DDL");
                    {
                        let mut w = waits.lock().expect("waits");
                        w.ddl += 1;
                        w.longest_ddl = w.longest_ddl.max(t.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        })
    };

    let e = Exporter::start(
        &db.url,
        &[
            "--poll-interval",
            "200ms",
            "--ledger.lateness",
            "30m",
            "--ledger.recent-window",
            "5m",
        ],
    );
    e.wait_ready(Duration::from_secs(240)).await;
    let during_catch_up = std::mem::take(&mut *waits.lock().expect("waits"));
    // Steady polls, reading the 30-minute window now and then.
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    inserts.await.expect("inserts");
    maintenance.await.expect("maintenance");
    let polling = std::mem::take(&mut *waits.lock().expect("waits"));
    let gave_way = e
        .scrape()
        .await
        .value("litellm_exporter_reads_given_way_total")
        .unwrap_or(0.0);
    eprintln!(
        "partition maintenance: catch-up: {} inserts (longest {:?}), {} DDL (longest {:?}); polling: {} inserts (longest {:?}), {} DDL (longest {:?}); reads given way: {gave_way}",
        during_catch_up.inserts,
        during_catch_up.longest_insert,
        during_catch_up.ddl,
        during_catch_up.longest_ddl,
        polling.inserts,
        polling.longest_insert,
        polling.ddl,
        polling.longest_ddl
    );
    assert!(
        during_catch_up.ddl >= 6 && polling.ddl >= 6,
        "too little maintenance ran: {during_catch_up:?} {polling:?}"
    );
    assert!(
        gave_way >= 1.0,
        "no read ever gave way: the maintenance never met a read, the test proved nothing"
    );
    for (phase, w) in [("catch-up", &during_catch_up), ("polling", &polling)] {
        assert!(
            w.longest_insert < Duration::from_secs(1),
            "an insert waited {:?} during the {phase}",
            w.longest_insert
        );
    }
    // Every row still counted once.
    let rows: i64 = c
        .query_one("SELECT count(*) FROM \"LiteLLM_SpendLogs\"", &[])
        .await
        .expect("count")
        .get(0);
    let start = Instant::now();
    loop {
        let ingested = e
            .scrape()
            .await
            .value("litellm_exporter_rows_ingested_total")
            .unwrap_or(0.0);
        if ingested == rows as f64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rows ingested {ingested} vs {rows} in the table"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_poll_reads_only_the_partitions_of_its_window() {
    let db = fresh_db(Schema::New);
    db.psql(PARTITION);
    db.psql(&partition_job(-20, 7));
    let c = db.client().await;
    c.batch_execute(&bulk_insert("hist", 20_000, 20))
        .await
        .expect("history");
    let schema = LiteLlmSchema::detect(&c).await.expect("schema");
    let p = Projection::new(
        &schema,
        Dims::ALL,
        Default::default(),
        Thresholds::new(LATENCY_BUCKETS, DEFAULT_BUCKETS),
        false,
        &[],
    );
    assert!(p.reads_legacy(), "the legacy table was not detected");
    // A poll's window: the last hour, open-ended, rows from transactions >= 1.
    let lo = c
        .query_one(
            "SELECT to_char((now() AT TIME ZONE 'UTC') - interval '1 hour', 'YYYY-MM-DD HH24:MI:SS')",
            &[],
        )
        .await
        .expect("lo")
        .get::<_, String>(0);
    let plan: Vec<String> = c
        .query(
            &format!("EXPLAIN (ANALYZE, COSTS OFF) {}", p.rows_sql()),
            &[&lo, &"infinity", &1i64, &0i64],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    let today = c
        .query_one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')", &[])
        .await
        .expect("today")
        .get::<_, String>(0);
    let old: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains(" Scan ") && l.contains("LiteLLM_SpendLogs_p2"))
        .filter(|l| {
            // Partitions named by day; those before yesterday cannot hold the window's rows.
            l.split("LiteLLM_SpendLogs_p")
                .nth(1)
                .and_then(|rest| rest.get(..8))
                .is_some_and(|day| day < today.as_str() && !is_yesterday(day, &today))
        })
        .collect();
    assert!(
        plan.contains("Subplans Removed"),
        "no partition was pruned:\n{plan}"
    );
    assert!(
        old.is_empty(),
        "a poll read old partitions: {old:?}\n{plan}"
    );
    assert!(
        plan.contains(&format!("LiteLLM_SpendLogs_p{today}")),
        "today's partition is not read:\n{plan}"
    );
    assert!(
        plan.contains("LiteLLM_SpendLogs_pdefault"),
        "the DEFAULT partition (rows of days without a partition) is not read:\n{plan}"
    );
}

/// Whether `day` is the day before `today` (both YYYYMMDD).
fn is_yesterday(day: &str, today: &str) -> bool {
    let parse = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok();
    matches!((parse(day), parse(today)), (Some(d), Some(t)) if d.succ_opt() == Some(t))
}

#[tokio::test]
async fn late_rows_on_partitions() {
    accounting::late_rows_are_counted_once_on(Layout::Partitioned).await;
}

#[tokio::test]
async fn rewritten_rows_on_partitions() {
    accounting::rows_rewritten_in_place_add_only_their_growth_on(Layout::Partitioned).await;
}

#[tokio::test]
async fn concurrent_transactions_on_partitions() {
    accounting::transactions_that_commit_late_are_counted_on(Layout::Partitioned).await;
}

#[tokio::test]
async fn restarts_on_partitions() {
    accounting::restarts_continue_from_the_same_values_on(Layout::Partitioned).await;
}

#[tokio::test]
async fn retention_deletes_on_partitions() {
    accounting::retention_deletes_never_decrease_counters_on(Layout::Partitioned).await;
}

#[tokio::test]
async fn two_exporters_on_partitions() {
    accounting::two_exporters_serve_identical_values_on(Layout::Partitioned).await;
}

#[tokio::test]
async fn the_read_only_role_is_told_to_grant_again_after_litellms_table_replacement() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    history(&c).await;
    let url = db.read_only_role("exporter_ro", "pw");
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let e = Exporter::start(&url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let before = settle_all(&e, &c).await.counters();

    // The new table carries none of the old one's grants: the exporter says what to do and
    // keeps serving the counters it has.
    db.psql(PARTITION);
    insert_row(&c, "after-conversion", 2.0, "team-a", 0.5, 9, false).await;
    let start = Instant::now();
    while !e.log_text().contains("run sql/setup/readonly_role.sql") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no hint to grant again:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    none_went_down(&before, &e.scrape().await, "while the grant is missing");

    // The setup script run again: the new row counts, nothing counted twice.
    db.read_only_role("exporter_ro", "pw");
    let granted = settle_all(&e, &c).await.counters();

    // A legacy table the role may not read: said, and the rest is still read (no endless
    // planning again between a snapshot that sees the table and a schema that cannot).
    db.psql("REVOKE SELECT ON \"LiteLLM_SpendLogs_legacy\" FROM exporter_ro");
    insert_row(&c, "after-revoke", 1.0, "team-b", 0.25, 4, false).await;
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        let spend = s.total("litellm_spend_metric_total");
        let before: f64 = granted
            .iter()
            .filter(|(k, _)| k.starts_with("litellm_spend_metric_total"))
            .map(|(_, v)| v)
            .sum();
        if (spend - before - 0.25).abs() < 1e-9 {
            none_went_down(&granted, &s, "after the revoke");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the row after the revoke is not counted ({spend} vs {before} + 0.25):\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        e.log_text().contains("is not readable by this role"),
        "the unreadable legacy table is not said:\n{}",
        e.log_text()
    );
}

#[tokio::test]
async fn a_state_file_is_still_discarded_for_another_litellm_schema() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    history(&c).await;
    // A second LiteLLM in the same database, in its own schema, with one request of its own.
    let mut tables = String::from("CREATE SCHEMA tenant2;");
    for t in litellm_exporter::schema::TABLES {
        tables.push_str(&format!(
            "CREATE TABLE tenant2.\"{t}\" (LIKE public.\"{t}\" INCLUDING ALL);"
        ));
    }
    db.psql(&tables);
    c.batch_execute("SET search_path = tenant2")
        .await
        .expect("search_path");
    insert_row(&c, "tenant2-only", 3.0, "team-t2", 0.125, 5, false).await;
    c.batch_execute("SET search_path = public")
        .await
        .expect("search_path");

    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    settle_all(&e, &c).await;
    assert_eq!(e.stop(), 0);

    let other = format!("{}?schema=tenant2", db.url);
    let e = Exporter::start(&other, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        let requests = s.total("litellm_proxy_total_requests_metric_total");
        if requests == 1.0 && e.log_text().contains("written for another database") {
            assert_eq!(s.total("litellm_spend_metric_total"), 0.125);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the other schema's exporter serves {requests} requests:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
