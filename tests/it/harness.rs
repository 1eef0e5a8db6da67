//! Tests of the test harness itself: the real LiteLLM schemas are applied,
//! databases are independent, and outages can be simulated.

use std::time::Duration;

use crate::support::{fresh_db, private_cluster, Schema, TestDb};

fn spend_logs_columns(db: &TestDb) -> Vec<String> {
    db.psql(
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 'LiteLLM_SpendLogs' ORDER BY column_name",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn new_schema_has_recent_spend_log_columns_and_index() {
    let db = fresh_db(Schema::New);
    let columns = spend_logs_columns(&db);
    for column in [
        "created_at",
        "updated_at",
        "status",
        "organization_id",
        "request_duration_ms",
        "startTime",
    ] {
        assert!(
            columns.iter().any(|c| c == column),
            "{column} missing from {columns:?}"
        );
    }
    let index = db.psql(
        "SELECT indexdef FROM pg_indexes \
         WHERE tablename = 'LiteLLM_SpendLogs' AND indexname = 'LiteLLM_SpendLogs_startTime_request_id_idx'",
    );
    assert!(
        index.contains(r#"("startTime", request_id)"#),
        "unexpected index: {index:?}"
    );
    // The new template also carries pg_stat_statements, which is loaded.
    assert_eq!(
        db.psql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"),
        "1"
    );
    db.psql("SELECT count(*) FROM pg_stat_statements");
}

#[test]
fn old_schema_lacks_recent_spend_log_columns() {
    let db = fresh_db(Schema::Old);
    let columns = spend_logs_columns(&db);
    assert!(
        columns.iter().any(|c| c == "startTime"),
        "old LiteLLM_SpendLogs: {columns:?}"
    );
    for column in [
        "status",
        "created_at",
        "organization_id",
        "request_duration_ms",
    ] {
        assert!(
            !columns.iter().any(|c| c == column),
            "{column} unexpectedly in {columns:?}"
        );
    }
}

#[tokio::test]
async fn fresh_databases_are_independent() {
    let a = fresh_db(Schema::New);
    let b = fresh_db(Schema::New);
    assert_ne!(a.name, b.name);
    assert_ne!(a.url, b.url);
    assert_eq!(a.port, b.port);

    let client = a.client().await;
    client
        .batch_execute(
            r#"INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, "startTime", "endTime")
               VALUES ('r1', 'completion', 'k', 0.5, now(), now());
               CREATE TABLE only_in_a (x int);"#,
        )
        .await
        .expect("insert into a");
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "LiteLLM_SpendLogs""#, &[])
        .await
        .expect("count in a")
        .get(0);
    assert_eq!(n, 1);

    assert_eq!(b.psql(r#"SELECT count(*) FROM "LiteLLM_SpendLogs""#), "0");
    assert_eq!(b.psql("SELECT to_regclass('only_in_a') IS NULL"), "t");
    // The template itself is untouched too.
    assert_eq!(
        fresh_db(Schema::New).psql(r#"SELECT count(*) FROM "LiteLLM_SpendLogs""#),
        "0"
    );
}

#[tokio::test]
async fn stop_and_start_simulate_an_outage() {
    // A cluster of our own: the shared one serves tests running in parallel.
    let cluster = private_cluster();
    let db = cluster.empty_db();
    db.psql("CREATE TABLE survives (x int); INSERT INTO survives VALUES (42)");
    let before = db.client().await;
    before
        .simple_query("SELECT 1")
        .await
        .expect("query before stop");

    cluster.stop();
    assert!(
        before.simple_query("SELECT 1").await.is_err(),
        "query on an old connection succeeded while stopped"
    );
    assert!(
        tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .is_err(),
        "connected while stopped"
    );
    assert!(
        db.try_psql("SELECT 1").is_err(),
        "psql succeeded while stopped"
    );

    cluster.start();
    let after = db.client().await;
    let x: i32 = after
        .query_one("SELECT x FROM survives", &[])
        .await
        .expect("query after start")
        .get(0);
    assert_eq!(x, 42);
    assert_eq!(db.port, cluster.port());
}

#[tokio::test]
async fn sigstop_freezes_and_sigcont_thaws() {
    let cluster = private_cluster();
    let db = cluster.empty_db();
    let client = db.client().await;

    cluster.sigstop();
    let frozen =
        tokio::time::timeout(Duration::from_millis(500), client.simple_query("SELECT 1")).await;
    assert!(
        frozen.is_err(),
        "query answered while the server was frozen"
    );
    let connecting = tokio::time::timeout(
        Duration::from_millis(500),
        tokio_postgres::connect(&db.url, tokio_postgres::NoTls),
    )
    .await;
    assert!(
        connecting.is_err(),
        "connection completed while the server was frozen"
    );

    cluster.sigcont();
    let thawed =
        tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1")).await;
    thawed
        .expect("query still hangs after sigcont")
        .expect("query after sigcont");
}
