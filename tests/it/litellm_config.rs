//! LiteLLM's stored settings (`LiteLLM_Config`, edited in its admin UI): the exporter reads the
//! `general_settings` and `litellm_settings` rows through the setup script's view, merges them over
//! the config file with LiteLLM 1.110.2's rule (store_model_in_db, the file's keys win, only what
//! LiteLLM applies from the database), at start and on SIGHUP; its role cannot read the rest of
//! the table; no stored value ever reaches the log or `/metrics`; without the view it says so
//! once and serves from the file alone.

use std::time::{Duration, Instant};

use serde_json::json;

use super::exporter::{Exporter, FAST};
use super::support::{fresh_db, Schema, TestDb};
use super::truth::insert_row;

/// Every stored value below carries this: none may show anywhere.
const MARK: &str = "LEAKCHECK";

/// Writes (or replaces) one `LiteLLM_Config` row, as LiteLLM's writer does (a JSON object).
async fn store(c: &tokio_postgres::Client, name: &str, value: serde_json::Value) {
    c.execute(
        "INSERT INTO \"LiteLLM_Config\" (param_name, param_value) VALUES ($1, $2)
         ON CONFLICT (param_name) DO UPDATE SET param_value = EXCLUDED.param_value",
        &[&name, &value],
    )
    .await
    .expect("store a LiteLLM_Config row");
}

/// The secrets LiteLLM keeps next to the settings rows, and secret-looking settings.
async fn store_secrets(c: &tokio_postgres::Client) {
    store(
        c,
        "environment_variables",
        json!({"OPENAI_API_KEY": format!("sk-env-{MARK}-1"), "SLACK_WEBHOOK_URL": format!("https://hooks/{MARK}-2")}),
    )
    .await;
    store(
        c,
        "router_settings",
        json!({"redis_password": format!("{MARK}-3")}),
    )
    .await;
}

async fn wait_for_log(e: &Exporter, text: &str) {
    let start = Instant::now();
    while !e.log_text().contains(text) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the log never said {text:?}:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lines of the log after the first `n` bytes (what a SIGHUP's read said).
fn log_after(e: &Exporter, n: usize) -> String {
    e.log_text().get(n..).unwrap_or_default().to_string()
}

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> String {
    let file = dir.path().join("proxy_config.yaml");
    std::fs::write(&file, yaml).expect("write config");
    file.to_str().expect("utf8").to_string()
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(MARK),
        "{what} shows a value stored in LiteLLM_Config:\n{text}"
    );
}

#[tokio::test]
async fn stored_settings_apply_with_litellm_precedence_and_never_show() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    insert_row(&c, "r1", 5.0, "team-a", 0.25, 10, false).await;
    store_secrets(&c).await;
    store(
        &c,
        "general_settings",
        json!({
            "store_model_in_db": true,
            // Applied: the file does not set it (no state file: a warning says what it costs).
            "maximum_spend_logs_retention_period": "30d",
            // Applied if valid; this one is not a boolean: named, never shown.
            "use_spend_logs_partitioning": format!("sk-{MARK}-4"),
            // LiteLLM does not apply these from its database.
            "database_url": format!("postgresql://u:{MARK}-5@elsewhere/db"),
            "disable_spend_logs": true,
            // Not the exporter's at all.
            "master_key": format!("sk-{MARK}-6"),
        }),
    )
    .await;
    store(
        &c,
        "litellm_settings",
        json!({
            // LiteLLM's Prometheus callback never takes these from the database.
            "prometheus_exclude_labels": ["team"],
            "custom_prometheus_tags": [format!("{MARK}-7")],
            // The file sets it: the file wins.
            "prometheus_emit_stream_label": true,
            "langfuse_secret": format!("sk-{MARK}-8"),
        }),
    )
    .await;
    let ro_url = db.read_only_role("exporter_cfg", "pw-cfg");
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(
        &dir,
        "model_list:\n  - model_name: gpt\n    litellm_params: {model: openai/gpt-4o-mini}\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\nlitellm_settings:\n  callbacks: [prometheus]\n  prometheus_emit_stream_label: false\n",
    );
    let mut args = FAST.to_vec();
    args.extend(["--config.file", &cfg, "--log.level", "debug"]);
    // STORE_MODEL_IN_DB off here: the stored general_settings turns it on, as in LiteLLM.
    let e = Exporter::start_with_env(&ro_url, &args, &[("STORE_MODEL_IN_DB", "false")]);
    e.wait_ready(Duration::from_secs(30)).await;
    wait_for_log(&e, "LiteLLM_Config: applied over the config file (as LiteLLM does): general_settings.maximum_spend_logs_retention_period.").await;
    let log = e.log_text();
    for said in [
        "store_model_in_db=\"the stored general_settings\"",
        "LiteLLM_Config general_settings.maximum_spend_logs_retention_period: LiteLLM deletes older spend-log rows",
        "LiteLLM_Config general_settings.use_spend_logs_partitioning: the stored value is not a boolean (the value is not shown)",
        "the stored values are ignored: litellm_settings.prometheus_emit_stream_label.",
        "Set them in the config file: general_settings.database_url, general_settings.disable_spend_logs, litellm_settings.prometheus_exclude_labels, litellm_settings.custom_prometheus_tags.",
    ] {
        assert!(log.contains(said), "the log does not say {said:?}:\n{log}");
    }
    // The stored exclusion of `team` is not applied (LiteLLM's own /metrics keeps it too).
    let s = e.scrape().await;
    assert!(
        s.named("litellm_spend_metric_total")
            .any(|x| x.labels.get("team").map(String::as_str) == Some("team-a")),
        "{s:?}"
    );

    // SIGHUP reads the rows again: now a valid partitioning setting applies as well.
    let before = e.log_text().len();
    store(
        &c,
        "general_settings",
        json!({
            "store_model_in_db": "True",
            "maximum_spend_logs_retention_period": "30d",
            "use_spend_logs_partitioning": true,
            "master_key": format!("sk-{MARK}-9"),
        }),
    )
    .await;
    e.signal("HUP");
    wait_for_log(&e, "applied over the config file (as LiteLLM does): general_settings.use_spend_logs_partitioning, general_settings.maximum_spend_logs_retention_period.").await;
    assert!(!log_after(&e, before).contains("is not a boolean"));

    // store_model_in_db turned off: LiteLLM ignores the rows, so does the exporter.
    let before = e.log_text().len();
    store(
        &c,
        "general_settings",
        json!({"store_model_in_db": false, "use_spend_logs_partitioning": true}),
    )
    .await;
    e.signal("HUP");
    wait_for_log(&e, "LiteLLM_Config: store_model_in_db is off").await;
    let after = log_after(&e, before);
    assert!(!after.contains("applied over the config file"), "{after}");

    // Nothing stored shows: not in what is served, not in the log at debug level.
    let (_, body) = e.get("/metrics").await;
    assert_clean("/metrics", &body);
    let (_, landing) = e.get("/").await;
    assert_clean("the landing page", &landing);
    let (_, ready) = e.get("/-/ready").await;
    assert_clean("/-/ready", &ready);
    assert_clean("the log (debug level)", &e.log_text());
    drop(e);

    // The file's key wins over the stored one; check-config does not read the database at all,
    // and says that the exporter will.
    let cfg = write_config(
        &dir,
        "general_settings:\n  store_model_in_db: true\n  use_spend_logs_partitioning: false\n",
    );
    store(
        &c,
        "general_settings",
        json!({"use_spend_logs_partitioning": true, "master_key": format!("sk-{MARK}-10")}),
    )
    .await;
    let mut args = FAST.to_vec();
    args.extend(["--config.file", &cfg]);
    let e = Exporter::start(&ro_url, &args);
    e.wait_ready(Duration::from_secs(30)).await;
    wait_for_log(
        &e,
        "the stored values are ignored: general_settings.use_spend_logs_partitioning.",
    )
    .await;
    let log = e.log_text();
    assert!(
        log.contains("no stored setting applies to the exporter"),
        "{log}"
    );
    assert!(
        log.contains("store_model_in_db=\"the config file\""),
        "{log}"
    );
    assert_clean("the log", &log);
    let out = std::process::Command::new(super::exporter::BIN)
        .args(["--db-url", &ro_url, "check-config", &cfg])
        .output()
        .expect("check-config");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("store_model_in_db is on (the config file)"),
        "{text}"
    );
    assert_clean("check-config", &text);
}

#[tokio::test]
async fn the_role_reads_only_the_two_settings_rows() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    store_secrets(&c).await;
    store(
        &c,
        "general_settings",
        json!({"use_spend_logs_partitioning": true}),
    )
    .await;
    store(&c, "litellm_settings", json!({"callbacks": ["prometheus"]})).await;
    // Twice: the script stays idempotent with the view.
    db.read_only_role("exporter_view", "pw-view");
    let ro_url = db.read_only_role("exporter_view", "pw-view");
    let (ro, conn) = tokio_postgres::connect(&ro_url, tokio_postgres::NoTls)
        .await
        .expect("connect as role");
    tokio::spawn(conn);
    for q in [
        "SELECT * FROM \"LiteLLM_Config\"",
        "SELECT param_value FROM \"LiteLLM_Config\" WHERE param_name = 'environment_variables'",
    ] {
        let err = ro
            .query(q, &[])
            .await
            .expect_err("the table must be refused");
        assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    }
    let names: Vec<String> = ro
        .query(
            "SELECT param_name FROM litellm_exporter_settings ORDER BY 1",
            &[],
        )
        .await
        .expect("the view")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["general_settings", "litellm_settings"]);
    let env: i64 = ro
        .query_one(
            "SELECT count(*) FROM litellm_exporter_settings
             WHERE param_name NOT IN ('general_settings', 'litellm_settings')
                OR param_value::text LIKE '%' || $1 || '%'",
            &[&MARK],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(env, 0, "the view shows a row or value it must not");
    // The filter runs before any function a reader adds (security_barrier).
    let options = db.psql(
        "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'litellm_exporter_settings'",
    );
    assert!(options.contains("security_barrier=true"), "{options}");
}

/// Starts an exporter on `url` with a file that turns store_model_in_db on, waits for it to
/// serve, reload once and poll a few more times, and returns its log.
async fn serve_without_the_view(
    db: &TestDb,
    url: &str,
    dir: &tempfile::TempDir,
    row: &str,
) -> String {
    let c = db.client().await;
    insert_row(&c, row, 5.0, "team-a", 0.25, 10, false).await;
    let cfg = write_config(dir, "general_settings:\n  store_model_in_db: true\n");
    let mut args = FAST.to_vec();
    args.extend(["--config.file", &cfg, "--log.level", "debug"]);
    let e = Exporter::start(url, &args);
    e.wait_ready(Duration::from_secs(30)).await;
    wait_for_log(
        &e,
        "view litellm_exporter_settings is missing or not granted",
    )
    .await;
    e.signal("HUP");
    wait_for_log(&e, "nothing to re-read").await;
    // Several refreshes after the reload (200 ms each).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = e.scrape().await;
    assert!(s.total("litellm_spend_metric_total") > 0.0, "{s:?}");
    e.log_text()
}

#[tokio::test]
async fn without_the_view_the_exporter_says_so_once_and_serves() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    store_secrets(&c).await;
    store(
        &c,
        "general_settings",
        json!({"use_spend_logs_partitioning": true}),
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    // No setup script: no view (even a superuser's session reads it only through the view).
    let log = serve_without_the_view(&db, &db.url, &dir, "r1").await;
    assert_eq!(
        log.matches("view litellm_exporter_settings is missing or not granted")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("Run sql/setup/readonly_role.sql"), "{log}");
    assert!(!log.contains("applied over the config file"), "{log}");
    // The view exists but is not granted to this role.
    let ro_url = db.read_only_role("exporter_nogrant", "pw-ng");
    db.psql("REVOKE SELECT ON litellm_exporter_settings FROM exporter_nogrant");
    let log = serve_without_the_view(&db, &ro_url, &dir, "r2").await;
    assert_eq!(
        log.matches("view litellm_exporter_settings is missing or not granted")
            .count(),
        1,
        "{log}"
    );
    assert_clean("the log", &log);
}
