//! "Exactly once": the six accounting scenarios of the core issue, each against a real
//! PostgreSQL with the real LiteLLM schema and the real exporter binary.

use std::collections::BTreeMap;
use std::time::Duration;

use super::exporter::{Exporter, FAST};
use super::partitions::Layout;
use super::support::{fresh_db, Schema};
use super::truth::{insert_row, settle};

async fn baseline(c: &tokio_postgres::Client, n: usize) {
    for i in 0..n {
        let team = ["team-a", "team-b", "", "team-\"q\""][i % 4];
        let ago = 30.0 + (i as f64) * 20.0; // spread over a few hours
        insert_row(
            c,
            &format!("base-{i}"),
            ago,
            team,
            0.0001 * (i as f64 + 1.0),
            10 + i as i32,
            i % 9 == 0,
        )
        .await;
    }
}

/// LiteLLM's retention job: deletes every row older than 30 minutes (most of `baseline`'s).
async fn retention_delete(c: &tokio_postgres::Client) {
    let deleted = c
        .execute(
            "DELETE FROM \"LiteLLM_SpendLogs\" WHERE \"startTime\" < (now() AT TIME ZONE 'UTC') - interval '30 minutes'",
            &[],
        )
        .await
        .expect("delete");
    assert!(
        deleted > 50,
        "the test must delete counted rows ({deleted})"
    );
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn late_rows_are_counted_once() {
    late_rows_are_counted_once_on(Layout::Plain).await
}

/// Also run on the partitioned spend log (`partitions.rs`).
pub(super) async fn late_rows_are_counted_once_on(layout: Layout) {
    let db = layout.fresh_db();
    let c = db.client().await;
    baseline(&c, 200).await;
    // Nested windows of 1, 4, 16 and 60 min, read every 1, 4, 16 and 60 polls: each late row
    // below is only inside the wider ones, and must be found by the first read that reaches it.
    let e = Exporter::start(
        &db.url,
        &[
            "--poll-interval",
            "200ms",
            "--ledger.recent-window",
            "1m",
            "--ledger.window-growth",
            "4",
        ],
    );
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;
    insert_row(&c, "late-30s", 30.0, "team-a", 0.5, 100, false).await;
    insert_row(&c, "late-3m", 180.0, "team-b", 0.375, 20, false).await;
    insert_row(&c, "late-5m", 300.0, "team-b", 0.25, 50, false).await;
    insert_row(&c, "late-55m", 3300.0, "team-a", 1.75, 70, false).await;
    insert_row(&c, "late-fail", 1200.0, "team-b", 0.0, 0, true).await;
    settle(&e, &c, false).await;
}

#[tokio::test]
async fn rows_rewritten_in_place_add_only_their_growth() {
    rows_rewritten_in_place_add_only_their_growth_on(Layout::Plain).await
}

/// Also run on the partitioned spend log (`partitions.rs`).
pub(super) async fn rows_rewritten_in_place_add_only_their_growth_on(layout: Layout) {
    let db = layout.fresh_db();
    let c = db.client().await;
    baseline(&c, 50).await;
    insert_row(&c, "batch-cost", 10.0, "team-a", 0.0, 0, false).await;
    insert_row(&c, "old-batch-cost", 2400.0, "team-b", 0.0, 0, false).await;
    let e = Exporter::start(
        &db.url,
        &["--poll-interval", "200ms", "--ledger.recent-window", "1m"],
    );
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;
    for id in ["batch-cost", "old-batch-cost"] {
        c.execute(
            "UPDATE \"LiteLLM_SpendLogs\" SET spend = 2.5, total_tokens = 1000,
                 updated_at = now() AT TIME ZONE 'UTC' WHERE request_id = $1",
            &[&id],
        )
        .await
        .expect("update");
    }
    let s = settle(&e, &c, false).await;
    // Requests were not counted again.
    assert_eq!(s.total("litellm_proxy_total_requests_metric_total"), 52.0);
}

#[tokio::test]
async fn transactions_that_commit_late_are_counted() {
    transactions_that_commit_late_are_counted_on(Layout::Plain).await
}

/// Also run on the partitioned spend log (`partitions.rs`).
pub(super) async fn transactions_that_commit_late_are_counted_on(layout: Layout) {
    let db = layout.fresh_db();
    let c = db.client().await;
    baseline(&c, 40).await;
    let e = Exporter::start(&db.url, &args(&[]));
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;

    // A transaction that takes its id now and commits after several polls.
    let mut slow = db.client().await;
    let tx = slow.transaction().await.expect("begin");
    insert_row(&tx, "slow-1", 1.0, "team-a", 3.0, 30, false).await;
    insert_row(&tx, "slow-2", 900.0, "team-b", 4.0, 40, false).await;
    for i in 0..10 {
        insert_row(&c, &format!("fast-{i}"), 0.5, "team-a", 0.125, 5, false).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle_without(&e, &c, 7.0).await;
    tx.commit().await.expect("commit");
    settle(&e, &c, false).await;
}

/// While a transaction is still open, the exporter must show the committed rows only.
async fn settle_without(e: &Exporter, c: &tokio_postgres::Client, missing_spend: f64) {
    let s = settle(e, c, false).await;
    let t = super::truth::truth(c, false).await;
    let spend: f64 = t.spend_by_team.values().sum();
    let exported = s.total("litellm_spend_metric_total");
    assert!(
        (exported - spend).abs() < 1e-9,
        "{exported} vs {spend} ({missing_spend} still uncommitted)"
    );
}

fn counters(s: &super::exporter::Scrape) -> BTreeMap<String, f64> {
    s.counters()
}

#[tokio::test]
async fn restarts_continue_from_the_same_values() {
    restarts_continue_from_the_same_values_on(Layout::Plain).await
}

/// Also run on the partitioned spend log (`partitions.rs`).
pub(super) async fn restarts_continue_from_the_same_values_on(layout: Layout) {
    let db = layout.fresh_db();
    let c = db.client().await;
    baseline(&c, 120).await;
    let e = Exporter::start(&db.url, &args(&[]));
    e.wait_ready(Duration::from_secs(30)).await;
    let before = counters(&settle(&e, &c, false).await);
    assert_eq!(e.stop(), 0, "SIGTERM exits 0");

    let e = Exporter::start(&db.url, &args(&[]));
    e.wait_ready(Duration::from_secs(30)).await;
    let after = counters(&settle(&e, &c, false).await);
    assert_eq!(
        before, after,
        "a rebuild must give the same values bit for bit"
    );

    // With a state file, rows inserted while the exporter is down are picked up on resume.
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    drop(e);
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;
    assert_eq!(e.stop(), 0);
    insert_row(&c, "while-down", 5.0, "team-b", 0.75, 12, false).await;
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let resumed = counters(&settle(&e, &c, false).await);
    for (k, v) in &before {
        assert!(
            resumed.get(k).copied().unwrap_or(0.0) >= *v,
            "{k} decreased"
        );
    }
}

#[tokio::test]
async fn retention_deletes_never_decrease_counters() {
    retention_deletes_never_decrease_counters_on(Layout::Plain).await
}

/// Also run on the partitioned spend log (`partitions.rs`).
pub(super) async fn retention_deletes_never_decrease_counters_on(layout: Layout) {
    let db = layout.fresh_db();
    let c = db.client().await;
    baseline(&c, 150).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state = state.to_str().expect("utf8");
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let before = counters(&settle(&e, &c, false).await);

    // LiteLLM's retention job: delete everything older than 30 minutes.
    retention_delete(&c).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        counters(&e.scrape().await),
        before,
        "a delete changed the counters"
    );

    // Across a restart too: the state file keeps what the deleted rows added.
    assert_eq!(e.stop(), 0);
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        counters(&e.scrape().await),
        before,
        "restart after a delete changed the counters"
    );

    // New rows still add exactly their own values.
    insert_row(&c, "after-delete", 1.0, "team-a", 2.0, 20, false).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s = e.scrape().await;
    let spend_before: f64 = before
        .iter()
        .filter(|(k, _)| k.starts_with("litellm_spend_metric_total"))
        .map(|(_, v)| v)
        .sum();
    let spend_now = s.total("litellm_spend_metric_total");
    assert!(
        (spend_now - spend_before - 2.0).abs() < 1e-9,
        "{spend_now} vs {spend_before} + 2"
    );
}

#[tokio::test]
async fn the_state_file_follows_the_database_not_the_route_to_it() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    baseline(&c, 150).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state_path = dir.path().join("state.json");
    let state = state_path.to_str().expect("utf8");
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let before = counters(&settle(&e, &c, false).await);
    assert_eq!(e.stop(), 0);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state file")).expect("json");
    let database = saved["database"].as_str().expect("database").to_string();
    assert!(
        database.starts_with("postgresql system ") && !database.contains("127.0.0.1"),
        "the state file names the spend log, not the URL: {database}"
    );

    // Retention runs, then the exporter comes back under a rotated role and another host name
    // (a new Vault lease, a move behind a pooler): a rebuild would lose the deleted rows.
    retention_delete(&c).await;
    let rotated = db
        .read_only_role("exporter_rotated", "pw-rotated")
        .replace("@127.0.0.1", "@localhost");
    assert_ne!(rotated, db.url);
    let e = Exporter::start(&rotated, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        counters(&e.scrape().await),
        before,
        "the same spend log through another route continues the counters"
    );
    let log = e.log_text();
    assert!(log.contains("Loaded state file"), "{log}");
    assert!(!log.contains("rebuilding"), "{log}");
    assert_eq!(e.stop(), 0);

    // Another database with the same state file: discarded, and the counters are that
    // database's own.
    let other = fresh_db(Schema::New);
    let c2 = other.client().await;
    baseline(&c2, 40).await;
    let e = Exporter::start(&other.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c2, false).await;
    let log = e.log_text();
    assert!(
        log.contains("State file was written for another database"),
        "{log}"
    );
}

#[tokio::test]
async fn a_state_file_ahead_of_the_database_is_discarded() {
    // A database restored from a backup keeps its identity, but the transactions the state
    // file's positions name never happened in it: the positions cannot be trusted.
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    baseline(&c, 40).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state_path = dir.path().join("state.json");
    let state = state_path.to_str().expect("utf8");
    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;
    assert_eq!(e.stop(), 0);
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state file")).expect("json");
    saved["cursor"]["late_since"] = serde_json::json!(1i64 << 40);
    std::fs::write(&state_path, saved.to_string()).expect("rewrite the state file");

    let e = Exporter::start(&db.url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;
    let log = e.log_text();
    assert!(log.contains("State file is ahead of the database"), "{log}");
}

#[tokio::test]
async fn without_pg_control_system_the_state_file_is_tied_to_the_url() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    baseline(&c, 60).await;
    // Function privileges live in each database's catalog: this affects this database only.
    db.psql("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC");
    let url = db.read_only_role("exporter_no_control", "pw-nc");
    let dir = tempfile::tempdir().expect("tmp");
    let state_path = dir.path().join("state.json");
    let state = state_path.to_str().expect("utf8");
    let e = Exporter::start(&url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    let before = counters(&settle(&e, &c, false).await);
    assert_eq!(e.stop(), 0);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state file")).expect("json");
    let database = saved["database"].as_str().expect("database");
    assert!(
        database.contains("exporter_no_control:***@127.0.0.1") && !database.contains("pw-nc"),
        "the redacted URL stands in: {database}"
    );

    let e = Exporter::start(&url, &args(&["--state.file", state]));
    e.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(counters(&settle(&e, &c, false).await), before);
    let log = e.log_text();
    assert!(
        log.contains("Cannot read the identity of the database"),
        "{log}"
    );
    assert!(
        log.contains("Loaded state file") && !log.contains("rebuilding"),
        "{log}"
    );
}

#[tokio::test]
async fn two_exporters_serve_identical_values() {
    two_exporters_serve_identical_values_on(Layout::Plain).await
}

/// Also run on the partitioned spend log (`partitions.rs`).
pub(super) async fn two_exporters_serve_identical_values_on(layout: Layout) {
    let db = layout.fresh_db();
    let c = db.client().await;
    baseline(&c, 100).await;
    let a = Exporter::start(&db.url, &args(&[]));
    a.wait_ready(Duration::from_secs(30)).await;
    for i in 0..20 {
        insert_row(
            &c,
            &format!("mid-{i}"),
            100.0 + i as f64,
            "team-b",
            0.01 * i as f64,
            i,
            i % 5 == 0,
        )
        .await;
    }
    // The second one reads nested windows (5 min every poll, up to the hour every 12 polls):
    // same values regardless.
    let b = Exporter::start(
        &db.url,
        &[
            "--poll-interval",
            "200ms",
            "--ledger.recent-window",
            "5m",
            "--ledger.window-growth",
            "2",
        ],
    );
    b.wait_ready(Duration::from_secs(30)).await;
    for i in 0..20 {
        insert_row(
            &c,
            &format!("end-{i}"),
            2.0,
            "team-a",
            0.003 * i as f64,
            i,
            false,
        )
        .await;
    }
    let sa = counters(&settle(&a, &c, false).await);
    let sb = counters(&settle(&b, &c, false).await);
    assert_eq!(sa, sb);
}

#[tokio::test]
async fn an_unchanged_ledger_is_not_rendered_again() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    baseline(&c, 30).await;
    let e = Exporter::start(&db.url, &args(&[]));
    e.wait_ready(Duration::from_secs(30)).await;
    let renders = |s: &super::exporter::Scrape| {
        s.value("litellm_exporter_renders_total")
            .expect("litellm_exporter_renders_total")
    };
    let before = renders(&settle(&e, &c, false).await);
    assert!(before >= 1.0, "the caught-up ledger was rendered");
    // Polls every 200 ms: about ten of them without a new row.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = renders(&e.scrape().await);
    assert_eq!(idle, before, "idle polls rendered the same totals again");
    insert_row(&c, "after-idle", 1.0, "team-a", 0.5, 10, false).await;
    let after = renders(&settle(&e, &c, false).await);
    assert!(
        after > idle,
        "a new row must be rendered ({idle} -> {after})"
    );
}

#[tokio::test]
async fn a_shutdown_during_the_catch_up_keeps_its_progress() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    db.psql(&super::locks::bulk_insert("hist", 20_000, 30));
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf8");
    // The catch-up is held at its start by a lock (the way a migration would hold it), so that
    // the shutdown arrives while it has thirty days to read, whatever the machine's speed.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE \"LiteLLM_SpendLogs\" IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let flags = ["--state.file", state_arg, "--db.statement-timeout", "30s"];
    let mut e = Exporter::start(&db.url, &args(&flags));
    let started = std::time::Instant::now();
    loop {
        if Exporter::waits_for_a_lock(&c).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.commit().await.expect("unlock");
    assert_eq!(
        e.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        e.log_text()
    );
    let log = e.log_text();
    assert!(
        log.contains("Catch-up stopped for the shutdown") && !log.contains("Catch-up complete"),
        "{log}"
    );
    let saved = std::fs::read_to_string(&state).expect("the state was saved at shutdown");
    assert!(
        saved.contains("\"CatchUp\""),
        "{}",
        &saved[..saved.len().min(400)]
    );

    // The next process goes on from there and counts every row once.
    let e = Exporter::start(&db.url, &args(&flags));
    e.wait_ready(Duration::from_secs(60)).await;
    assert!(
        e.log_text().contains("Loaded state file"),
        "{}",
        e.log_text()
    );
    settle(&e, &c, false).await;
}
