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
        err.contains("poll_intervall")
            && err.contains("line 2")
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
        (stream.get("True"), stream.get("False")),
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
