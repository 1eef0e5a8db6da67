//! Database faults: the server stopped mid-run and started again. `/metrics` keeps answering with
//! the last values and says the database is down; after recovery nothing is lost or counted twice.
//! Uses a private cluster so that stopping it does not disturb tests running in parallel.

use std::time::Duration;

use super::exporter::{Exporter, FAST};
use super::support::{private_cluster, Schema};
use super::truth::{insert_row, settle};

#[tokio::test]
async fn database_restart_loses_nothing_and_counts_nothing_twice() {
    let cluster = private_cluster();
    let db = cluster.fresh_db(Schema::New);
    let c = db.client().await;
    for i in 0..60 {
        insert_row(
            &c,
            &format!("before-{i}"),
            10.0 + i as f64,
            "team-a",
            0.01,
            3,
            i % 7 == 0,
        )
        .await;
    }
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(30)).await;
    let before = settle(&e, &c, false).await;
    drop(c);

    cluster.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = e.scrape().await;
    assert_eq!(during.value("litellm_exporter_database_up"), Some(0.0));
    assert_eq!(
        during.total("litellm_proxy_total_requests_metric_total"),
        before.total("litellm_proxy_total_requests_metric_total"),
        "the last values stay served while the database is down"
    );
    assert_eq!(e.get("/-/ready").await.0, 503);

    cluster.start();
    let c = db.client().await;
    for i in 0..30 {
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
    }
    // A row that started while the database was down and arrived late.
    insert_row(&c, "late-during-outage", 20.0, "team-b", 0.5, 9, false).await;
    e.wait_ready(Duration::from_secs(60)).await;
    let after = settle(&e, &c, false).await;
    assert_eq!(
        after.total("litellm_proxy_total_requests_metric_total"),
        91.0
    );
    // The recovery is logged once, with how long the outage lasted.
    let log = e.log_text();
    assert_eq!(log.matches("Refreshes succeed again").count(), 1, "{log}");
}
