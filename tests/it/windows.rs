//! The ledger's window reads, driven directly (not through the binary): reading a window in many
//! `startTime` chunks of one snapshot counts exactly what one statement counts, and the nested
//! poll windows find rows committed late into any of them.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;

use litellm_exporter::catalogue::{DEFAULT_BUCKETS, LATENCY_BUCKETS};
use litellm_exporter::db::give_way::GiveWay;
use litellm_exporter::db::{self, PoolSettings};
use litellm_exporter::ledger::class::{ClassKey, Dims};
use litellm_exporter::ledger::read::Projection;
use litellm_exporter::ledger::tail::{Cursor, Tail, TailConfig};
use litellm_exporter::ledger::values::{ClassAcc, Thresholds};
use litellm_exporter::ledger::Ledger;
use litellm_exporter::schema::Schema as LiteLlmSchema;

use super::support::{fresh_db, Schema};
use super::truth::insert_row;

fn tail(chunk_ms: i64) -> Tail {
    let cfg = TailConfig {
        lateness: Duration::from_secs(3600),
        recent: Duration::from_secs(120),
        growth: 4,
        chunk_target: Duration::from_secs(2),
    };
    let cursor = Cursor {
        chunk_ms,
        ..Cursor::default()
    };
    Tail::new(cfg, cursor)
}

/// A read session on the test database, and the projection of every dimension.
async fn reader(url: &str) -> (deadpool_postgres::Object, Projection, GiveWay) {
    let target = db::parse_url(url).expect("url");
    let settings = PoolSettings {
        size: 2,
        statement_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(5),
    };
    let pool = db::pool(&target, &settings);
    let client = pool.get().await.expect("session");
    let schema = LiteLlmSchema::detect(&client).await.expect("schema");
    let p = Projection::new(
        &schema,
        Dims::ALL,
        Default::default(),
        Thresholds::new(LATENCY_BUCKETS, DEFAULT_BUCKETS),
        false,
        &[],
    );
    let watch = GiveWay::new(
        pool.clone(),
        prometheus::IntCounter::new("t", "t").expect("counter"),
    );
    (client, p, watch)
}

fn totals(l: &Ledger) -> HashMap<ClassKey, ClassAcc> {
    (0..l.classes().len())
        .map(|c| (l.key(c), l.classes()[c].acc.clone()))
        .collect()
}

#[tokio::test]
async fn chunked_window_reads_count_what_one_read_counts() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    // History, then a row every 7 s over the last hour, and two rows dated in the future (a
    // skewed clock): the last chunk is open-ended.
    for i in 0..40 {
        let team = ["team-a", "team-b", "team-c"][i % 3];
        insert_row(
            &c,
            &format!("old-{i}"),
            4000.0 + 600.0 * i as f64,
            team,
            0.5,
            10,
            false,
        )
        .await;
    }
    for i in 0..500 {
        let team = ["team-a", "team-b", "team-c", ""][i % 4];
        let spend = 0.001 * (i % 17) as f64;
        insert_row(
            &c,
            &format!("hour-{i}"),
            7.0 * i as f64 + 1.0,
            team,
            spend,
            i as i32,
            i % 11 == 0,
        )
        .await;
    }
    insert_row(&c, "future-1", -30.0, "team-a", 2.0, 5, false).await;
    insert_row(&c, "future-2", -3600.0, "team-b", 3.0, 6, false).await;

    let (mut client, p, w) = reader(&db.url).await;

    // One statement per window against chunks of one second (widening as they prove fast).
    let (mut one, mut many) = (tail(31 * 24 * 3600 * 1000), tail(1000));
    let (mut l1, mut l2) = (Ledger::default(), Ledger::default());
    one.catch_up(&mut client, &w, &mut l1, &p, |_| ControlFlow::Continue(()))
        .await
        .expect("catch-up");
    many.catch_up(&mut client, &w, &mut l2, &p, |_| ControlFlow::Continue(()))
        .await
        .expect("catch-up");
    assert_eq!(l1.stats.rows_ingested, 542);
    assert_eq!(l2.stats.rows_ingested, 542);
    assert_eq!(totals(&l1), totals(&l2));
    // Every row of the lateness window (and the future ones) is remembered, by both.
    assert_eq!(l1.remembered_rows(), 502);
    assert_eq!(l2.remembered_rows(), 502);

    // After a first poll (which reads the whole lateness window), rows committed late into each
    // of the nested windows (2, 8, 32, 60 min, read every 1, 4, 16, 30 polls) are found by the
    // first read of a window that reaches them, whatever the chunk size, and not counted again.
    for (t, l) in [(&mut one, &mut l1), (&mut many, &mut l2)] {
        let r = t.poll(&mut client, &w, l, &p).await.expect("poll");
        assert_eq!((r.window_ms / 60_000, r.new_rows), (60, 0));
    }
    for (id, ago) in [
        ("late-1m", 60.0),
        ("late-6m", 360.0),
        ("late-25m", 1500.0),
        ("late-50m", 3000.0),
    ] {
        insert_row(&c, id, ago, "team-late", 1.25, 100, false).await;
    }
    for (t, l) in [(&mut one, &mut l1), (&mut many, &mut l2)] {
        let mut found = Vec::new();
        for _ in 1..=30 {
            let r = t.poll(&mut client, &w, l, &p).await.expect("poll");
            if r.new_rows > 0 {
                found.push((r.window_ms / 60_000, r.new_rows));
            }
        }
        assert_eq!(found, vec![(2, 1), (8, 1), (32, 1), (60, 1)]);
        assert_eq!(l.stats.rows_ingested, 546);
    }
    assert_eq!(totals(&l1), totals(&l2));
}

#[tokio::test]
async fn catch_up_chunks_are_cut_where_history_turns_dense() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    // Weeks of sparse history, a burst of 60 rows within a second two days ago, 25 rows sharing
    // one startTime a day ago, and 40 rows in the last hour (the lateness window's read).
    for i in 0..30 {
        let age = 86400.0 * (3.0 + i as f64);
        insert_row(&c, &format!("old-{i}"), age, "team-a", 0.5, 10, false).await;
    }
    for i in 0..60 {
        let age = 2.0 * 86400.0 + 0.013 * i as f64;
        insert_row(
            &c,
            &format!("burst-{i}"),
            age,
            "team-b",
            0.25,
            i,
            i % 7 == 0,
        )
        .await;
    }
    for i in 0..25 {
        insert_row(&c, &format!("tie-{i}"), 86400.0, "team-c", 0.125, 3, false).await;
    }
    c.execute(
        "UPDATE \"LiteLLM_SpendLogs\" SET \"startTime\" = (SELECT min(\"startTime\")
           FROM \"LiteLLM_SpendLogs\" WHERE request_id LIKE 'tie-%') WHERE request_id LIKE 'tie-%'",
        &[],
    )
    .await
    .expect("tie");
    for i in 0..40 {
        let age = 600.0 + 0.05 * i as f64;
        insert_row(&c, &format!("hour-{i}"), age, "team-a", 0.5, i, false).await;
    }
    let (mut client, p, w) = reader(&db.url).await;

    // Chunks a month wide: by time alone, the first chunk would hold all 115 older rows.
    let month = 31 * 24 * 3600 * 1000;
    let (mut whole, mut bounded) = (tail(month), tail(month));
    whole.chunk_rows = 1_000_000;
    bounded.chunk_rows = 10;
    let (mut l1, mut l2) = (Ledger::default(), Ledger::default());
    whole
        .catch_up(&mut client, &w, &mut l1, &p, |_| ControlFlow::Continue(()))
        .await
        .expect("catch-up");
    let mut chunks = vec![(None, 0)];
    bounded
        .catch_up(&mut client, &w, &mut l2, &p, |pr| {
            chunks.push((Some(pr.done_ms), pr.rows));
            ControlFlow::Continue(())
        })
        .await
        .expect("catch-up");
    for w in chunks.windows(2) {
        let ((from, before), (to, after)) = (w[0], w[1]);
        let (n, width) = (after - before, from.map(|f| to.unwrap() - f));
        // Only a single millisecond holding more rows than that (the tie) is read whole.
        assert!(n <= 10 || width == Some(1), "{n} rows in {width:?} ms");
    }
    assert!(chunks.iter().any(|w| w.1 > 0), "{chunks:?}");
    assert!(chunks.len() > 115 / 10, "{chunks:?}");
    assert_eq!(chunks.last().unwrap().1, 115);
    assert_eq!(l1.stats.rows_ingested, 155);
    assert_eq!(l2.stats.rows_ingested, 155);
    assert_eq!(totals(&l1), totals(&l2));
    assert_eq!(l2.remembered_rows(), 40);
}

#[tokio::test]
async fn a_catch_up_stopped_between_chunks_resumes_from_its_state_file() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    // Three days of history (a row every 40 min), and rows in the lateness window.
    for i in 0..108 {
        let team = ["team-a", "team-b", "team-c"][i % 3];
        let age = 4000.0 + 2400.0 * i as f64;
        insert_row(&c, &format!("old-{i}"), age, team, 0.5, 10, i % 5 == 0).await;
    }
    for i in 0..12 {
        insert_row(
            &c,
            &format!("hour-{i}"),
            60.0 + 250.0 * i as f64,
            "team-a",
            0.25,
            i,
            false,
        )
        .await;
    }
    let (mut client, p, w) = reader(&db.url).await;

    // A shutdown after the third chunk of an hour each: three hours of the oldest history read.
    let hour = 3600 * 1000;
    let mut stopped = tail(hour);
    stopped.chunk_rows = 1_000_000;
    let mut ledger = Ledger::default();
    let mut chunks = 0;
    let done = stopped
        .catch_up(&mut client, &w, &mut ledger, &p, |_| {
            chunks += 1;
            if chunks == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .expect("catch-up");
    assert!(!done, "a stopped catch-up is not done");
    assert_eq!(chunks, 3);
    let read = ledger.stats.rows_ingested;
    assert!(read > 0 && read < 108, "{read} rows read before the stop");
    assert_eq!(
        ledger.remembered_rows(),
        0,
        "the lateness window is read last"
    );
    assert!(!stopped.cursor.caught_up());

    // The state file holds what the stop left; rows written while the exporter is down, into
    // the history not read yet and into the lateness window, are counted by the resumed process.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("state.json");
    litellm_exporter::state::save(&path, "fp", "db", &ledger, &stopped.cursor).expect("save");
    insert_row(&c, "down-old", 30000.0, "team-b", 0.75, 7, false).await;
    insert_row(&c, "down-hour", 30.0, "team-c", 1.5, 9, false).await;
    let (mut resumed_ledger, cursor, database) = litellm_exporter::state::load(&path, "fp")
        .expect("load")
        .expect("state for these settings");
    assert_eq!(database, "db");
    let mut resumed = Tail::new(stopped.cfg.clone(), cursor);
    let done = resumed
        .catch_up(&mut client, &w, &mut resumed_ledger, &p, |_| {
            ControlFlow::Continue(())
        })
        .await
        .expect("resumed catch-up");
    assert!(done);
    assert!(resumed.cursor.caught_up());

    // The same as one catch-up that was never stopped: every row once, none twice.
    let mut whole = tail(hour);
    let mut l = Ledger::default();
    whole
        .catch_up(&mut client, &w, &mut l, &p, |_| ControlFlow::Continue(()))
        .await
        .expect("catch-up");
    assert_eq!(l.stats.rows_ingested, 122);
    assert_eq!(resumed_ledger.stats.rows_ingested, 122);
    assert_eq!(totals(&resumed_ledger), totals(&l));
    assert_eq!(resumed_ledger.remembered_rows(), l.remembered_rows());
}
