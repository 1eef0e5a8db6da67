//! LiteLLM's metric settings in `--config.file`: only the listed metrics exist, with the listed
//! labels (series that differed only in a removed label are summed), exclusion wins, and
//! `check-config` names each problem with its position and the closest valid name.

use std::process::Command;
use std::time::Duration;

use super::exporter::{Exporter, BIN, FAST};
use super::support::{fresh_db, Schema};
use super::truth::insert_row;

/// Starts the exporter on `db` with `yaml` as its --config.file (plus fast polling).
fn start_with(db_url: &str, yaml: &str) -> (Exporter, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let mut args = FAST.to_vec();
    args.extend(["--config.file", file.to_str().expect("utf8")]);
    (Exporter::start(db_url, &args), dir)
}

#[tokio::test]
async fn metrics_config_selects_families_and_labels() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    for i in 0..30 {
        let team = ["team-a", "team-b"][i % 2];
        insert_row(&c, &format!("r{i}"), 10.0 + i as f64, team, 0.5, 10, false).await;
    }
    c.batch_execute(
        "INSERT INTO \"LiteLLM_TeamTable\" (team_id, team_alias, max_budget, spend)
         VALUES ('team-a', 'Alpha', 10, 1), ('team-b', 'Beta', 20, 2)",
    )
    .await
    .expect("teams");
    let (e, _dir) = start_with(
        &db.url,
        "litellm_settings:\n  prometheus_metrics_config:\n    - group: money\n      metrics: [litellm_spend_metric, litellm_proxy_total_requests_metric, litellm_remaining_team_budget_metric]\n      include_labels: [team, team_alias, model]\n  prometheus_exclude_metrics: [litellm_proxy_total_requests_metric]\n  prometheus_exclude_labels: [team_alias]\n",
    );
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = e.scrape().await;
    let families: std::collections::BTreeSet<&str> = s
        .samples
        .iter()
        .map(|x| x.name.as_str())
        .filter(|n| !n.starts_with("litellm_exporter_"))
        .collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        vec![
            "litellm_remaining_team_budget_metric",
            "litellm_spend_metric_total"
        ]
    );
    let spend: Vec<_> = s.named("litellm_spend_metric_total").collect();
    assert_eq!(spend.len(), 2, "one series per team (model is the same)");
    for x in &spend {
        let keys: Vec<&str> = x.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["model", "team"]);
        assert_eq!(
            x.value, 7.5,
            "15 rows of 0.5 per team, summed over removed labels"
        );
    }
    let budgets = s.sum_by("litellm_remaining_team_budget_metric", "team");
    assert_eq!(budgets.get("team-a"), Some(&9.0));
    assert!(s
        .named("litellm_remaining_team_budget_metric")
        .all(|x| !x.labels.contains_key("team_alias")));
    drop(e);
    drop(c);
}

#[test]
fn check_config_reports_positions_and_suggestions() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "litellm_settings:\n  prometheus_exclude_metrics: [litellm_spend_metrc]\n  prometheus_exclude_labels: [teem]\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].ends_with("bad.yaml:2:32: unknown metric \"litellm_spend_metrc\" (did you mean litellm_spend_metric?)"), "{err}");
    assert!(
        lines[1].contains("bad.yaml:3:31: unknown label \"teem\" (did you mean team?)"),
        "{err}"
    );

    let unknown_key = dir.path().join("key.yaml");
    std::fs::write(&unknown_key, "exporter:\n  poll_intervall: 5s\n").expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&unknown_key)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key.yaml:2:3: unknown key exporter.poll_intervall")
            && err.contains("did you mean poll_interval?"),
        "{err}"
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "litellm_settings:\n  prometheus_exclude_metrics: [litellm_deployment_state]\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning:") && text.contains("cannot supply"),
        "{text}"
    );
    assert!(
        text.contains("litellm_spend_metric [end_user, hashed_api_key"),
        "{text}"
    );
}

#[tokio::test]
async fn custom_metadata_labels_tags_and_stream() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    for i in 0..6 {
        insert_row(
            &c,
            &format!("c{i}"),
            5.0 + i as f64,
            "team-a",
            1.0,
            10,
            false,
        )
        .await;
    }
    c.batch_execute(
        "UPDATE \"LiteLLM_SpendLogs\" SET request_tags = '[\"prod\", \"team-x\"]',
            metadata = metadata || '{\"spend_logs_metadata\": {\"project\": \"apollo\"}}'
          WHERE request_id IN ('c0', 'c1');
         UPDATE \"LiteLLM_SpendLogs\" SET request_tags = '{\"not\": \"an array\"}',
            metadata = metadata || '{\"project\": \"zeus\"}' WHERE request_id = 'c2';
         UPDATE \"LiteLLM_SpendLogs\" SET \"completionStartTime\" = \"startTime\" + interval '100 ms'
          WHERE request_id IN ('c0', 'c3');",
    )
    .await
    .expect("shape rows");
    let (e, _dir) = start_with(
        &db.url,
        "litellm_settings:\n  custom_prometheus_metadata_labels: [metadata.project]\n  custom_prometheus_tags: [prod, 'team-*', '100%_sure']\n  prometheus_emit_stream_label: true\n",
    );
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = e.scrape().await;
    let by_project = s.sum_by("litellm_spend_metric_total", "metadata_project");
    assert_eq!(by_project.get("apollo"), Some(&2.0), "{by_project:?}");
    assert_eq!(by_project.get("zeus"), Some(&1.0), "{by_project:?}");
    assert_eq!(by_project.get("None"), Some(&3.0), "{by_project:?}");
    let prod = s.sum_by("litellm_proxy_total_requests_metric_total", "tag_prod");
    assert_eq!(
        (prod.get("true"), prod.get("false")),
        (Some(&2.0), Some(&4.0))
    );
    let team = s.sum_by("litellm_proxy_total_requests_metric_total", "tag_team__");
    assert_eq!(team.get("true"), Some(&2.0), "{team:?}");
    // LIKE's own wildcards in a tag are literal.
    let sure = s.sum_by("litellm_proxy_total_requests_metric_total", "tag_100__sure");
    assert_eq!(sure.get("false"), Some(&6.0), "{sure:?}");
    let stream = s.sum_by("litellm_proxy_total_requests_metric_total", "stream");
    assert_eq!(
        (stream.get("True"), stream.get("None")),
        (Some(&2.0), Some(&4.0))
    );
    assert!(s
        .named("litellm_spend_metric_total")
        .all(|x| !x.labels.contains_key("stream")));
}

#[tokio::test]
async fn series_cap_folds_into_other_without_decreasing() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    for (i, team) in ["t-c", "t-d", "t-e", "t-f"].iter().enumerate() {
        insert_row(&c, &format!("r{i}"), 5.0, team, 1.0 + i as f64, 10, false).await;
    }
    c.batch_execute(
        "INSERT INTO \"LiteLLM_TeamTable\" (team_id, max_budget, spend)
         VALUES ('t-c', 10, 1), ('t-d', 10, 2), ('t-e', 10, 3)",
    )
    .await
    .expect("teams");
    let (e, _dir) = start_with(
        &db.url,
        "litellm_settings:\n  prometheus_metrics_config:\n    - group: g\n      metrics: [litellm_spend_metric, litellm_remaining_team_budget_metric]\n      include_labels: [team]\n  prometheus_metrics_max_series_per_metric: 2\n",
    );
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = e.scrape().await;
    let spend = s.sum_by("litellm_spend_metric_total", "team");
    let want: std::collections::BTreeMap<String, f64> =
        [("t-c", 1.0), ("t-d", 2.0), ("other", 7.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
    assert_eq!(spend, want);
    assert_eq!(
        s.named("litellm_remaining_team_budget_metric").count(),
        2,
        "gauges beyond the cap are dropped"
    );
    let folded = s
        .named("litellm_exporter_folded_series")
        .find(|x| x.labels["family"] == "litellm_spend_metric")
        .map(|x| x.value);
    assert_eq!(folded, Some(2.0));

    // A team that sorts first displaces t-d into "other": nothing decreases.
    insert_row(&c, "r-a", 1.0, "t-a", 0.5, 10, false).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = e.scrape().await;
    let spend = s.sum_by("litellm_spend_metric_total", "team");
    let want: std::collections::BTreeMap<String, f64> =
        [("t-a", 0.5), ("t-c", 1.0), ("other", 9.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
    assert_eq!(spend, want);
}

#[tokio::test]
async fn identity_labels_buckets_and_sources() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    insert_row(&c, "e1", 5.0, "team-a", 1.0, 10, false).await;
    c.batch_execute(
        "UPDATE \"LiteLLM_SpendLogs\" SET end_user = 'cust-1', requester_ip_address = '10.1.2.3',
            metadata = metadata || '{\"user_api_key_user_email\": \"a@example.com\"}';
         INSERT INTO \"LiteLLM_UserTable\" (user_id, user_email, user_alias, max_budget, spend)
            VALUES ('u1', 'u1@example.com', 'Ursula', 5, 1);
         INSERT INTO \"LiteLLM_TeamTable\" (team_id, max_budget, spend) VALUES ('team-a', 10, 1);",
    )
    .await
    .expect("shape");
    let (e, _dir) = start_with(
        &db.url,
        "litellm_settings:\n  enable_end_user_cost_tracking_prometheus_only: true\n  prometheus_user_budget_label_include_email_alias: true\n  prometheus_latency_buckets: [0.5, 2, 60]\nexporter:\n  labels: {user_email: true, client_ip: true}\n  sources: {teams: false}\n",
    );
    e.wait_ready(Duration::from_secs(30)).await;
    let s = e.scrape().await;
    let spend: Vec<_> = s.named("litellm_spend_metric_total").collect();
    assert_eq!(spend.len(), 1);
    assert_eq!(spend[0].labels["end_user"], "cust-1");
    assert_eq!(spend[0].labels["user_email"], "a@example.com");
    assert_eq!(spend[0].labels["client_ip"], "10.1.2.3");
    let les: Vec<&str> = s
        .named("litellm_request_total_latency_metric_bucket")
        .map(|x| x.labels["le"].as_str())
        .collect();
    assert_eq!(les, vec!["0.5", "2.0", "60.0", "+Inf"]);
    let user = s
        .named("litellm_remaining_user_budget_metric")
        .find(|x| x.labels["user"] == "u1");
    let user = user.expect("user budget");
    assert_eq!(
        (
            user.labels["user_email"].as_str(),
            user.labels["user_alias"].as_str()
        ),
        ("u1@example.com", "Ursula")
    );
    assert!(
        s.named("litellm_remaining_team_budget_metric")
            .next()
            .is_none(),
        "teams are off"
    );

    // The ledger can be switched off too: only entity gauges remain.
    drop(e);
    let (e, _dir) = start_with(&db.url, "exporter:\n  sources: {ledger: false}\n");
    e.wait_ready(Duration::from_secs(30)).await;
    let s = e.scrape().await;
    assert!(s.named("litellm_spend_metric_total").next().is_none());
    assert!(s
        .named("litellm_remaining_team_budget_metric")
        .next()
        .is_some());
}

#[test]
fn the_shipped_example_config_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config.example.yaml");
    let out = Command::new(BIN)
        .args(["check-config", file])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("metadata_project") && text.contains("tag_prod"),
        "{text}"
    );
    let bad = tempfile::tempdir().expect("tmp");
    let f = bad.path().join("m.yaml");
    std::fs::write(&f, "litellm_settings:\n  custom_prometheus_metadata_labels: [project]\n  prometheus_metrics_max_series_per_metric: 0\n").expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&f)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("m.yaml:2:") && err.contains("must look like metadata.<key>"),
        "{err}"
    );
    assert!(err.contains("must be at least 1"), "{err}");
}

/// A LiteLLM proxy config as a proxy runs it: deployments, router and general settings, secrets
/// from the environment, callbacks, Prometheus keys. `DATABASE_URL_LINE` is replaced per test.
const PROXY_CONFIG: &str = r#"model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 600
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: os.environ/AZURE_API_BASE
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-08-01-preview"
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: os.environ/ANTHROPIC_API_KEY
    model_info:
      id: claude-primary

router_settings:
  routing_strategy: usage-based-routing-v2
  redis_host: os.environ/REDIS_HOST
  redis_port: 6379
  num_retries: 2
  timeout: 60

litellm_settings:
  callbacks: ["prometheus"]
  drop_params: true
  request_timeout: 600
  cache: true
  cache_params:
    type: redis
    host: os.environ/REDIS_HOST
  require_auth_for_metrics_endpoint: false
  enable_end_user_cost_tracking_prometheus_only: true
  prometheus_end_user_metrics_max_series_per_metric: 2
  prometheus_initialize_budget_metrics: true
  prometheus_metrics_config:
    - group: spend
      metrics: [litellm_spend_metric, litellm_proxy_total_requests_metric]
      include_labels: [end_user]

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
DATABASE_URL_LINE
  store_model_in_db: true
  alerting: ["slack"]
  proxy_batch_write_at: 60
  maximum_spend_logs_retention_period: 30d
  use_spend_logs_partitioning: true

environment_variables:
  REDIS_HOST: redis
  SLACK_WEBHOOK_URL: https://hooks.slack.example/T000/B000
"#;

fn proxy_config(db_line: &str, extra_env: &str) -> String {
    format!(
        "{}{extra_env}",
        PROXY_CONFIG.replace("DATABASE_URL_LINE", db_line)
    )
}

#[tokio::test]
async fn a_litellm_proxy_config_is_taken_as_it_is() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("proxy_config.yaml");
    std::fs::write(
        &file,
        proxy_config("  database_url: os.environ/DATABASE_URL", ""),
    )
    .expect("write");
    let db = fresh_db(Schema::New);

    // check-config: valid, says what it took and what it ignored.
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let taken = text
        .lines()
        .find(|l| l.starts_with("Taken from the file: "))
        .expect("taken line");
    for k in [
        "litellm_settings.prometheus_end_user_metrics_max_series_per_metric",
        "litellm_settings.prometheus_metrics_config",
        "general_settings.database_url",
        "general_settings.proxy_batch_write_at",
        "general_settings.use_spend_logs_partitioning",
        "general_settings.store_model_in_db",
        "environment_variables (2 names",
    ] {
        assert!(taken.contains(k), "{k} in {taken}");
    }
    let ignored = text
        .lines()
        .find(|l| l.starts_with("Ignored (LiteLLM settings"))
        .expect("ignored line");
    for k in [
        "model_list (3 entries)",
        "router_settings (5 keys)",
        "litellm_settings: callbacks, drop_params, request_timeout, cache, cache_params, require_auth_for_metrics_endpoint",
        // store_model_in_db is taken: it decides whether LiteLLM's stored settings apply.
        "general_settings: master_key, alerting",
    ] {
        assert!(ignored.contains(k), "{k} in {ignored}");
    }
    assert!(text.contains("Series per family: at most 2"), "{text}");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(
        warnings[0].contains("proxy_config.yaml:36:3: end-user tracking is on"),
        "{text}"
    );
    assert!(
        warnings[1].contains(
            "proxy_config.yaml:50:3: general_settings.maximum_spend_logs_retention_period 30d"
        ) && warnings[1].contains("without --state.file"),
        "{text}"
    );

    // The exporter runs on it: the URL from the environment, the metric settings honoured
    // (end-user series capped at 2 per family, the rest folded into "other").
    let c = db.client().await;
    for (i, user) in ["cust-a", "cust-b", "cust-c", "cust-d"].iter().enumerate() {
        insert_row(
            &c,
            &format!("p{i}"),
            5.0,
            "team-a",
            1.0 + i as f64,
            10,
            false,
        )
        .await;
        c.execute(
            "UPDATE \"LiteLLM_SpendLogs\" SET end_user = $1 WHERE request_id = $2",
            &[user, &format!("p{i}")],
        )
        .await
        .expect("end user");
    }
    let mut args = FAST.to_vec();
    args.extend(["--config.file", file.to_str().expect("utf8")]);
    let e = Exporter::spawn(&args, &[("DATABASE_URL", db.url.as_str())]);
    e.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = e.scrape().await;
    let spend = s.sum_by("litellm_spend_metric_total", "end_user");
    let want: std::collections::BTreeMap<String, f64> =
        [("cust-a", 1.0), ("cust-b", 2.0), ("other", 7.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
    assert_eq!(spend, want);
    let families: std::collections::BTreeSet<&str> = s
        .samples
        .iter()
        .map(|x| x.name.as_str())
        .filter(|n| !n.starts_with("litellm_exporter_"))
        .collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        vec![
            "litellm_proxy_total_requests_metric_total",
            "litellm_spend_metric_total"
        ]
    );
    drop(e);

    // The URL from the file alone: os.environ/ resolved through its environment_variables, no
    // flag and no DATABASE_URL.
    let own = dir.path().join("own_env.yaml");
    std::fs::write(
        &own,
        proxy_config(
            "  database_url: os.environ/PROXY_DB_URL",
            &format!("  PROXY_DB_URL: {}\n", db.url),
        ),
    )
    .expect("write");
    let args = [
        "--config.file",
        own.to_str().expect("utf8"),
        "--poll-interval",
        "200ms",
        "--ledger.recent-window",
        "1h",
    ];
    let e = Exporter::spawn(&args, &[]);
    e.wait_ready(Duration::from_secs(30)).await;
    let s = e.scrape().await;
    let total: f64 = s.named("litellm_spend_metric_total").map(|x| x.value).sum();
    assert_eq!(total, 10.0);
}

#[test]
fn check_config_lists_every_problem_in_line_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("c.yaml");
    std::fs::write(
        &f,
        "exporter:\n  poll_interval: soon\n  pol_interval: 1s\n  lateness: 30s\n  recent_window: 10s\nlitellm_settings:\n  callbacks: [prometheus]\n  prometheus_exclude_metric: [litellm_spend_metric]\n  prometheus_deployment_and_latency_caller_identity: caller\nmodel_list: []\ngeneral_settings:\n  proxy_batch_write_at: 60\nrouter_setings: {}\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&f)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = f.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 6, "{err}");
    // The bad duration is named by its place in the file, not by --poll-interval.
    assert!(
        lines[0].starts_with(&format!("{p}:2:3: exporter.poll_interval \"soon\": ")),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!("{p}:3:3: unknown key exporter.pol_interval (did you mean poll_interval?)")
    );
    assert_eq!(lines[2], format!("{p}:8:3: unknown key litellm_settings.prometheus_exclude_metric (did you mean prometheus_exclude_metrics?)"));
    assert!(
        lines[3].starts_with(&format!(
            "{p}:9:3: prometheus_deployment_and_latency_caller_identity \"caller\": use api_key_alias, user_email or both"
        )),
        "{err}"
    );
    assert!(
        lines[4].starts_with(&format!(
            "{p}:12:3: general_settings.proxy_batch_write_at is 60 s"
        )) && lines[4].contains("up to 65 s")
            && lines[4].contains("but exporter.lateness is 30s"),
        "{err}"
    );
    assert_eq!(
        lines[5],
        format!("{p}:13:1: unknown section router_setings (did you mean router_settings?)")
    );
}

#[test]
fn what_the_database_cannot_supply_is_a_warning() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("c.yaml");
    std::fs::write(
        &f,
        "litellm_settings:\n  prometheus_emit_rate_limit_labels: true\n  prometheus_emit_input_sequence_length_label: true\n  prometheus_deployment_and_latency_caller_identity: both\n  prometheus_initialize_budget_metrics: false\n  prometheus_metrics_ttl_seconds: 600\n  enable_end_user_cost_tracking_prometheus_only: true\n  disable_end_user_cost_tracking: true\ngeneral_settings:\n  database_url: os.environ/LX_TEST_UNSET_DB_URL\n  disable_spend_logs: true\n  disable_error_logs: true\n  maximum_spend_logs_retention_period: 7d\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&f)
        .env_remove("DATABASE_URL")
        .env_remove("LX_TEST_UNSET_DB_URL")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = f.display().to_string();
    let warnings: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .collect();
    let want = [
        (2, "prometheus_emit_rate_limit_labels: the rate_limit_category and rate_limit_type labels are not added"),
        (3, "prometheus_emit_input_sequence_length_label: the input_sequence_length label is not added"),
        (4, "prometheus_deployment_and_latency_caller_identity: both: the deployment and latency families keep"),
        (5, "prometheus_initialize_budget_metrics: false: the exporter reads budgets from the tables"),
        (6, "prometheus_metrics_ttl_seconds: series are never expired"),
        (8, "disable_end_user_cost_tracking wins over enable_end_user_cost_tracking_prometheus_only"),
        (10, "general_settings.database_url os.environ/LX_TEST_UNSET_DB_URL: LX_TEST_UNSET_DB_URL is set neither in the environment nor in environment_variables here"),
        (11, "disable_spend_logs: true: LiteLLM writes no spend-log rows, so every spend-log family"),
        (12, "disable_error_logs: true: LiteLLM stores no failed requests, so litellm_proxy_failed_requests_metric"),
        (13, "general_settings.maximum_spend_logs_retention_period 7d: LiteLLM deletes older spend-log rows"),
    ];
    assert_eq!(warnings.len(), want.len(), "{text}");
    for (w, (line, msg)) in warnings.iter().zip(want) {
        assert!(w.starts_with(&format!("{p}:{line}:3: {msg}")), "{w}");
    }

    // A state file silences the retention warning.
    let out = Command::new(BIN)
        .args([
            "--state.file",
            "/tmp/lx-state-never-written.json",
            "check-config",
        ])
        .arg(&f)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && !text
                .lines()
                .any(|l| l.starts_with("warning: ") && l.contains("retention_period")),
        "{text}"
    );

    // At start, the unset variable is an error naming its place.
    let out = Command::new(BIN)
        .arg("--config.file")
        .arg(&f)
        .env_remove("DATABASE_URL")
        .env_remove("LX_TEST_UNSET_DB_URL")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{p}:10:3: general_settings.database_url os.environ/LX_TEST_UNSET_DB_URL: LX_TEST_UNSET_DB_URL is set neither")),
        "{err}"
    );
}
