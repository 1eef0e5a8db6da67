//! The ledger's window reads, driven directly (not through the binary): reading a window in many
//! `startTime` chunks of one snapshot counts exactly what one statement counts, and the nested
//! poll windows find rows committed late into any of them.

use std::collections::HashMap;
use std::time::Duration;

use litellm_exporter::catalogue::{DEFAULT_BUCKETS, LATENCY_BUCKETS};
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

    let target = db::parse_url(&db.url).expect("url");
    let settings = PoolSettings {
        size: 1,
        statement_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(5),
    };
    let pool = db::pool(&target, &settings);
    let mut client = pool.get().await.expect("session");
    let schema = LiteLlmSchema::detect(&client).await.expect("schema");
    let p = Projection::new(
        &schema,
        Dims::ALL,
        Default::default(),
        Thresholds::new(LATENCY_BUCKETS, DEFAULT_BUCKETS),
        false,
        &[],
    );

    // One statement per window against chunks of one second (widening as they prove fast).
    let (mut one, mut many) = (tail(31 * 24 * 3600 * 1000), tail(1000));
    let (mut l1, mut l2) = (Ledger::default(), Ledger::default());
    one.catch_up(&mut client, &mut l1, &p, |_| {})
        .await
        .expect("catch-up");
    many.catch_up(&mut client, &mut l2, &p, |_| {})
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
        let r = t.poll(&mut client, l, &p).await.expect("poll");
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
            let r = t.poll(&mut client, l, &p).await.expect("poll");
            if r.new_rows > 0 {
                found.push((r.window_ms / 60_000, r.new_rows));
            }
        }
        assert_eq!(found, vec![(2, 1), (8, 1), (32, 1), (60, 1)]);
        assert_eq!(l.stats.rows_ingested, 546);
    }
    assert_eq!(totals(&l1), totals(&l2));
}
