//! `sql/setup/readonly_role.sql`: idempotent, and the exporter works as that role while a write
//! through the same role is refused.

use std::time::Duration;

use super::exporter::{Exporter, FAST};
use super::support::{fresh_db, Schema};
use super::truth::{insert_row, settle};

#[tokio::test]
async fn exporter_runs_as_the_read_only_role_and_cannot_write() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    insert_row(&c, "r1", 5.0, "team-a", 0.25, 10, false).await;
    // Twice: the script is idempotent.
    db.read_only_role("exporter_ro", "pw-ro");
    let ro_url = db.read_only_role("exporter_ro", "pw-ro");
    let e = Exporter::start(&ro_url, FAST);
    e.wait_ready(Duration::from_secs(30)).await;
    settle(&e, &c, false).await;
    assert!(
        e.scrape()
            .await
            .named("litellm_remaining_team_budget_metric")
            .count()
            == 0
    );

    let (ro, conn) = tokio_postgres::connect(&ro_url, tokio_postgres::NoTls)
        .await
        .expect("connect as role");
    tokio::spawn(conn);
    let err = ro
        .execute("DELETE FROM \"LiteLLM_SpendLogs\"", &[])
        .await
        .expect_err("a write must be refused");
    assert!(format!("{err:?}").contains("read-only"), "{err:?}");
    ro.batch_execute("SET default_transaction_read_only = off")
        .await
        .expect("a session setting");
    let err = ro
        .batch_execute("DELETE FROM \"LiteLLM_SpendLogs\"")
        .await
        .expect_err("a write must be refused without the privilege too");
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
}
