//! Backfill end to end: 30 days of generated traffic are backfilled, turned into TSDB blocks by the
//! real `promtool`, and served by a real Prometheus that then scrapes the live exporter. Checked
//! through Prometheus's HTTP API: per team and per past day, the counter's growth equals SQL's
//! spend of that day (both as a difference of instant values and as `increase()` over the day),
//! and at the boundary between backfilled and scraped samples the series continue: no reset, the
//! same label sets, and the first live value is the last backfilled one plus what came after.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::exporter::{free_port, Exporter, Scrape, BIN, SEED_BIN};
use super::support::{fresh_db, Schema};

const DAY: i64 = 86_400;

/// A Prometheus server on a free port with its storage in a temporary directory.
struct Prometheus {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, data: &Path, exporter_port: u16) -> Prometheus {
        let port = free_port();
        let cfg = dir.join("prometheus.yml");
        // The target labels are the ones given to the backfill: same series.
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: litellm\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n        labels:\n          instance: litellm-it\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("cannot run `prometheus`: install it (Debian package prometheus)");
        Prometheus { child, port, log }
    }

    /// Waits for `/-/ready` (the blocks are loaded by then).
    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}): {}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "prometheus not ready: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query at `time` (seconds); the result vector.
    async fn query(&self, q: &str, time: f64) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let t = format!("{time:.3}");
        let r = reqwest::Client::new()
            .get(&url)
            .query(&[("query", q), ("time", t.as_str())])
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {q}: {e}\n{}", self.log_text()));
        let body: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
        assert_eq!(body["status"], "success", "query {q}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `sum by (team)` style results: label value -> number.
    async fn by(&self, q: &str, label: &str, time: f64) -> BTreeMap<String, f64> {
        self.query(q, time)
            .await
            .iter()
            .map(|s| {
                let v = s["value"][1].as_str().expect("value").parse().expect("num");
                (s["metric"][label].as_str().unwrap_or("").to_string(), v)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `litellm-exporter backfill` up to now into `out`, with the configuration file `cfg` (the live
/// exporter's too) and `args` (`--from`, ...); what it prints.
fn backfill(db_url: &str, cfg: &str, out: &Path, args: &[&str]) -> String {
    run(
        Command::new(BIN)
            .args([
                "--db-url",
                db_url,
                "--config.file",
                cfg,
                "backfill",
                "--to",
                "now",
            ])
            .arg("--out")
            .arg(out)
            .args(args),
        "litellm-exporter backfill",
    )
}

/// SQL's spend per team over `startTime` in (lo, hi] (seconds), by LiteLLM's rules (successful
/// requests only) in the exporter's units: each row's spend rounded to pico-dollars, bad numbers
/// counted as 0, no team as "None".
async fn spend_by_team(c: &tokio_postgres::Client, lo: f64, hi: f64) -> BTreeMap<String, f64> {
    let rows = c
        .query(
            "SELECT coalesce(nullif(team_id, ''), 'None'),
                    coalesce(sum(CASE WHEN spend >= 0 AND spend < 1e6 THEN round(spend * 1e12)
                                      ELSE 0 END) / 1e12, 0)::float8
             FROM \"LiteLLM_SpendLogs\"
             WHERE coalesce(status, metadata->>'status', '') <> 'failure'
               AND \"startTime\" > to_timestamp($1) AT TIME ZONE 'UTC'
               AND \"startTime\" <= to_timestamp($2) AT TIME ZONE 'UTC'
             GROUP BY 1",
            &[&lo, &hi],
        )
        .await
        .expect("truth query");
    rows.iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
        .collect()
}

fn assert_same(what: &str, got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>) {
    let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    for k in keys {
        let (g, w) = (
            got.get(k).copied().unwrap_or(0.0),
            want.get(k).copied().unwrap_or(0.0),
        );
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}, team {k:?}: Prometheus {g} vs SQL {w}\nPrometheus: {got:?}\nSQL: {want:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_history_matches_sql_and_continues_into_live() {
    let t0 = Instant::now();
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run(
        Command::new(SEED_BIN).args(["--db-url", &db.url, "--rows", "20000", "--days", "30"]),
        "litellm-seed",
    );
    // A few families, including a histogram, by team: small enough for a quick test. The same
    // file configures the backfill and the live exporter, as the README asks.
    let cfg = d.join("config.yaml");
    std::fs::write(
        &cfg,
        "litellm_settings:\n  prometheus_metrics_config:\n    - group: t\n      metrics: [litellm_spend_metric, litellm_proxy_total_requests_metric, litellm_request_total_latency_metric]\n      include_labels: [team, team_alias]\n",
    )
    .expect("config");
    let cfg = cfg.to_str().expect("utf-8 path");

    let out = d.join("om");
    let printed = backfill(
        &db.url,
        cfg,
        &out,
        &[
            "--from",
            "now-32d",
            "--label",
            "job=litellm",
            "--label",
            "instance=litellm-it",
        ],
    );
    assert!(printed.contains("Wrote"), "{printed}");
    eprintln!("backfilled after {:?}", t0.elapsed());
    // The last backfilled step: the newest sample in the files.
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "one file per day with traffic: {files:?}"
    );
    let last_text = std::fs::read_to_string(files.last().expect("a file")).expect("read");
    assert!(last_text.ends_with("# EOF\n"));
    let boundary: i64 = last_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .expect("ts")
                .parse::<i64>()
                .expect("ts")
        })
        .max()
        .expect("samples");

    // Rows that arrive after the backfill, before the live exporter starts: existing teams.
    c.execute(
        "INSERT INTO \"LiteLLM_SpendLogs\"
         SELECT (jsonb_populate_record(s, jsonb_build_object(
                   'request_id', s.request_id || '-after',
                   'startTime', (now() AT TIME ZONE 'UTC'),
                   'endTime', (now() AT TIME ZONE 'UTC') + interval '1 second'))).*
         FROM \"LiteLLM_SpendLogs\" s
         WHERE request_id IN (SELECT request_id FROM \"LiteLLM_SpendLogs\"
                              ORDER BY request_id LIMIT 40)",
        &[],
    )
    .await
    .expect("insert rows after the backfill");

    let blocks = d.join("blocks");
    std::fs::create_dir_all(&blocks).expect("blocks dir");
    for f in &files {
        run(
            Command::new("promtool")
                // One block per day file: one pass over the file instead of twelve.
                .args([
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    "--max-block-duration=24h",
                ])
                .arg(f)
                .arg(&blocks),
            "promtool tsdb create-blocks-from openmetrics (install the Debian package prometheus)",
        );
    }
    eprintln!("blocks created after {:?}", t0.elapsed());
    // Blocks go into the data directory before Prometheus starts.
    let data = d.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    for b in std::fs::read_dir(&blocks).expect("blocks") {
        let b = b.expect("block").path();
        std::fs::rename(&b, data.join(b.file_name().expect("name"))).expect("move block");
    }

    let e = Exporter::start(&db.url, &["--config.file", cfg, "--poll-interval", "1s"]);
    e.wait_ready(Duration::from_secs(60)).await;
    let mut prom = Prometheus::start(d, &data, e.port);
    prom.wait_ready().await;
    eprintln!("prometheus ready after {:?}", t0.elapsed());

    // Wait for a few live scrapes.
    let started = Instant::now();
    let mut now;
    loop {
        now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        // `up` exists only for live scrapes.
        let up = prom
            .query("count_over_time(up{job=\"litellm\"}[5m]) >= 3", now)
            .await;
        if !up.is_empty() {
            tokio::time::sleep(Duration::from_secs(3)).await;
            now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "Prometheus did not scrape the exporter: {}",
            prom.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Past days: the growth of each team's counter equals SQL's spend of that day.
    let today = (now as i64).div_euclid(DAY) * DAY;
    for days_ago in [2, 5, 11, 17, 23, 28] {
        let t2 = (today - (days_ago - 1) * DAY) as f64;
        let t1 = t2 - DAY as f64;
        let want = spend_by_team(&c, t1, t2).await;
        assert!(
            want.len() >= 10,
            "the generator spread traffic over 30 days: {want:?}"
        );
        let q = "sum by (team) (litellm_spend_metric_total{job=\"litellm\"})";
        let (a, b) = (prom.by(q, "team", t1).await, prom.by(q, "team", t2).await);
        let diff: BTreeMap<String, f64> = b
            .iter()
            .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
            .collect();
        assert_same(
            &format!("value difference over day -{days_ago}"),
            &diff,
            &want,
        );
        // Every series has a sample at the day's start and end (heartbeats fall on whole hours),
        // so increase() over exactly that day does not extrapolate (Prometheus 2.x range
        // selectors include the sample at the window's start).
        let inc = prom
            .by(
                "sum by (team) (increase(litellm_spend_metric_total{job=\"litellm\"}[1d]))",
                "team",
                t2,
            )
            .await;
        assert_same(&format!("increase() over day -{days_ago}"), &inc, &want);
    }

    // The boundary: no reset in any family, across the last backfilled sample.
    let b = boundary as f64;
    for family in [
        "litellm_spend_metric_total",
        "litellm_proxy_total_requests_metric_total",
        "litellm_request_total_latency_metric_count",
        "litellm_request_total_latency_metric_bucket",
    ] {
        let window = (now - b + 600.0).ceil() as i64;
        let resets = prom
            .query(&format!("sum(resets({family}[{window}s]))"), now)
            .await;
        let v: f64 = resets[0]["value"][1]
            .as_str()
            .expect("value")
            .parse()
            .expect("num");
        assert_eq!(v, 0.0, "{family}: resets across the boundary");
    }
    // The same label sets on both sides, and the first live value is the last backfilled value
    // plus the spend that came after it.
    let q = "sum by (team) (litellm_spend_metric_total{job=\"litellm\"})";
    let before = prom.by(q, "team", b).await;
    let after = prom.by(q, "team", now).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "teams before and after the boundary"
    );
    let series_q = "count(litellm_spend_metric_total{job=\"litellm\"})";
    assert_eq!(
        prom.query(series_q, b).await[0]["value"][1],
        prom.query(series_q, now).await[0]["value"][1],
        "series before and after the boundary"
    );
    let mut grown = before.clone();
    for (k, v) in spend_by_team(&c, b, now + 3600.0).await {
        *grown.entry(k).or_default() += v;
    }
    assert_same("live value after the boundary", &after, &grown);
    assert!(
        grown.values().sum::<f64>() > before.values().sum::<f64>(),
        "rows arrived between the backfill and the live exporter"
    );
    // The last backfilled value is the SQL total up to the boundary.
    assert_same(
        "last backfilled value",
        &before,
        &spend_by_team(&c, 0.0, b).await,
    );
}

/// What an instant query at the last backfilled step sees in the OpenMetrics files under `dir`:
/// the last sample of every series written within Prometheus's 5-minute lookback (a series the
/// cap folded stops being written), as exposition lines without timestamps. Two samples of one
/// series at one timestamp fail the test.
fn last_backfilled(dir: &Path) -> String {
    let mut last: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for f in std::fs::read_dir(dir).expect("out dir") {
        let text = std::fs::read_to_string(f.expect("entry").path()).expect("read");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (sample, ts) = line.rsplit_once(' ').expect("timestamp");
            let (series, value) = sample.rsplit_once(' ').expect("value");
            let ts: i64 = ts.parse().expect("whole seconds");
            match last.get(series) {
                Some((t, v)) if *t == ts => {
                    panic!("{series} written twice at {ts}: {v} and {value}")
                }
                Some((t, _)) if *t > ts => {}
                _ => {
                    last.insert(series.to_string(), (ts, value.to_string()));
                }
            }
        }
    }
    let end = last.values().map(|(t, _)| *t).max().expect("samples");
    last.iter()
        .filter(|(_, (t, _))| *t > end - 300)
        .map(|(series, (_, value))| format!("{series} {value}\n"))
        .collect()
}

/// A team literally named "other", where a family shows only the team and the series cap folds:
/// its series has the labels of the fold's "other" series, and the backfill must fold it as the
/// live exporter does (one series, holding the folded teams and it), not write two series with
/// the same labels. Both are checked against each other and against SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_named_other_folds_alike_in_backfill_and_live() {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    // 40 successful requests over the last two hours, ten per team; "other" sorts first, so the
    // cap of 2 alone would keep it (and "p") and fold "q" and "r".
    c.execute(
        "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
            prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
            model, model_group, custom_llm_provider, team_id, status, metadata)
         SELECT 'fold-' || g, 'acompletion', 'hash-fold', (g % 5 + 1) / 1000.0, 10, 4, 6,
            (now() AT TIME ZONE 'UTC') - make_interval(mins => 10 + 3 * g),
            (now() AT TIME ZONE 'UTC') - make_interval(mins => 10 + 3 * g) + interval '1 second',
            (now() AT TIME ZONE 'UTC') - make_interval(mins => 10 + 3 * g) + interval '1 second',
            'openai/gpt-4o', 'gpt-4o', 'openai', (ARRAY['other', 'p', 'q', 'r'])[g % 4 + 1],
            'success', '{\"status\": \"success\"}'::jsonb
         FROM generate_series(0, 39) g",
        &[],
    )
    .await
    .expect("insert spend-log rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "litellm_settings:\n  prometheus_metrics_config:\n    - group: t\n      metrics: [litellm_spend_metric, litellm_proxy_total_requests_metric, litellm_request_total_latency_metric]\n      include_labels: [team]\n  prometheus_metrics_max_series_per_metric: 2\n",
    )
    .expect("config");
    let cfg = cfg.to_str().expect("utf-8 path");
    let out = dir.path().join("om");
    backfill(&db.url, cfg, &out, &["--from", "now-3h", "--step", "60s"]);
    let backfilled = Scrape::parse(&last_backfilled(&out)).counters();

    let e = Exporter::start(&db.url, &["--config.file", cfg]);
    e.wait_ready(Duration::from_secs(60)).await;
    let live = e.scrape().await.counters();
    assert_eq!(
        backfilled, live,
        "last backfilled values vs the live exporter"
    );

    // What both show: "p" on its own, and one series "other" for the teams other, q and r.
    let want = spend_by_team(&c, 0.0, 4e9).await;
    let spend = |teams: &[&str]| teams.iter().map(|t| want[*t]).sum::<f64>();
    let shown: BTreeMap<String, f64> = live
        .iter()
        .filter(|(k, _)| k.starts_with("litellm_spend_metric_total"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_same(
        "spend shown per series",
        &shown,
        &BTreeMap::from([
            (
                "litellm_spend_metric_total{\"team\": \"other\"}".to_string(),
                spend(&["other", "q", "r"]),
            ),
            (
                "litellm_spend_metric_total{\"team\": \"p\"}".to_string(),
                spend(&["p"]),
            ),
        ]),
    );
    let requests = |team: &str| {
        live[&format!("litellm_proxy_total_requests_metric_total{{\"team\": \"{team}\"}}")]
    };
    assert_eq!((requests("other"), requests("p")), (30.0, 10.0));
}
