//! The soak: ten minutes of generated traffic at 200 rows/s (the project's own generator,
//! `litellm-exporter seed --rate 200`) with a scrape every second. The exporter's resident
//! memory (VmRSS) and its database sessions must stay flat: a leak per row, per poll or per
//! scrape shows as growth over the run. Figures are printed (run with `--nocapture`).
//!
//! A separate test binary, ignored by a plain `cargo test`: `scripts/test` runs it in the
//! background (`--ignored`) while the other tests run, then waits for it.
//! `LITELLM_SOAK_DURATION` (e.g. `3m`) shortens it for local runs; the test command uses 10 min.
//!
//! Flatness criterion. The exporter remembers the rows of its lateness window, which is
//! legitimate growth until rows start being forgotten (lateness + 5 min). The soak therefore
//! runs with a 1 min lateness, so that memory reaches its steady state after 6 of the 10
//! minutes; the baseline is the median RSS of the samples between 60 % and 67 % of the run,
//! and the median RSS of the last tenth may exceed it by at most 10 % (plus 2 MiB of allocator
//! noise, plus the share of series added meanwhile: new label classes are kept for good).
//! Medians, because a refresh briefly holds two expositions: single samples spike, a leak moves
//! the median. The remembered-rows gauge must be flat over the same window, which shows the
//! steady state was reached. Database sessions may never exceed the pool size.

#[path = "support/mod.rs"]
mod support;

#[path = "it/exporter.rs"]
#[allow(dead_code)]
mod exporter;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exporter::{Exporter, BIN};
use support::{fresh_db, Schema};

const POOL: i64 = 2;
/// History rows written before the exporter starts: enough that most label classes exist by then.
const HISTORY: i64 = 300_000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

struct Sample {
    at: Duration,
    rss_kib: u64,
    sessions: i64,
    remembered: f64,
    rows: f64,
    series: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 10-minute soak: scripts/test runs it in the background with --ignored"]
async fn soak_memory_and_connections_stay_flat() {
    let duration = match std::env::var("LITELLM_SOAK_DURATION") {
        Ok(d) if !d.is_empty() => humantime::parse_duration(&d)
            .unwrap_or_else(|e| panic!("LITELLM_SOAK_DURATION={d:?}: {e}")),
        _ => Duration::from_secs(600),
    };
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    // A week of history, then live traffic at 200 rows/s for the whole run. Few entities and a
    // long history, so that most label classes (kept for good: they are counters) are seen
    // during the history; the few the live rows still add are allowed for below.
    let mut generator = Command::new(BIN)
        .args([
            "seed",
            "--rows",
            &HISTORY.to_string(),
            "--days",
            "7",
            "--rate",
            "200",
        ])
        .args([
            "--teams", "4", "--keys", "12", "--users", "8", "--orgs", "2",
        ])
        .args(["--customers", "4"])
        .arg("--duration")
        .arg(format!("{}s", duration.as_secs() + 30))
        .arg("--db-url")
        .arg(&db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the traffic generator");
    // The exporter starts once the history is in (rows older than its lateness window that
    // arrive later would not be counted, by design).
    let begun = Instant::now();
    loop {
        let n: i64 = c
            .query_one(r#"SELECT count(*) FROM "LiteLLM_SpendLogs""#, &[])
            .await
            .expect("count")
            .get(0);
        if n >= HISTORY {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(300),
            "the generator wrote only {n} history rows in 5 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let e = Exporter::start(
        &db.url,
        &[
            "--poll-interval",
            "1s",
            "--ledger.lateness",
            "1m",
            "--ledger.recent-window",
            "30s",
            "--db.pool-size",
            "2",
        ],
    );
    e.wait_ready(Duration::from_secs(120)).await;

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut slowest = Duration::ZERO;
    while start.elapsed() < duration {
        let t = Instant::now();
        let (status, body) = e.get("/metrics").await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200, "scrape failed; log:\n{}", e.log_text());
        let s = exporter::Scrape::parse(&body);
        let sessions: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE application_name = 'litellm-exporter' AND datname = $1",
                &[&db.name],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        assert!(
            sessions <= POOL,
            "{sessions} exporter sessions (pool size {POOL}) at {:?}",
            start.elapsed()
        );
        samples.push(Sample {
            at: start.elapsed(),
            rss_kib: rss_kib(e.pid()),
            sessions,
            remembered: s.value("litellm_exporter_remembered_rows").unwrap_or(0.0),
            rows: s
                .value("litellm_exporter_rows_ingested_total")
                .unwrap_or(0.0),
            series: s.total("litellm_exporter_series"),
        });
        if let Ok(Some(status)) = generator.try_wait() {
            panic!("the traffic generator stopped early ({status})");
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(t.elapsed())).await;
    }
    let _ = generator.kill();
    let _ = generator.wait();

    let frac = |s: &Sample| s.at.as_secs_f64() / duration.as_secs_f64();
    let base: Vec<&Sample> = samples
        .iter()
        .filter(|s| (0.60..0.67).contains(&frac(s)))
        .collect();
    let last: Vec<&Sample> = samples.iter().filter(|s| frac(s) >= 0.67).collect();
    assert!(!base.is_empty() && !last.is_empty(), "too few samples");
    let baseline = median(base.iter().map(|s| s.rss_kib).collect());
    let peak = last.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let tail: Vec<&Sample> = samples.iter().filter(|s| frac(s) >= 0.90).collect();
    assert!(!tail.is_empty(), "too few samples at the end");
    let end_median = median(tail.iter().map(|s| s.rss_kib).collect());
    let first = &samples[0];
    let end = samples.last().expect("samples");
    let rem_base = base.iter().map(|s| s.remembered).fold(0.0, f64::max);
    let rem_peak = last.iter().map(|s| s.remembered).fold(0.0, f64::max);
    let max_sessions = samples.iter().map(|s| s.sessions).max().unwrap_or(0);
    // New label classes are legitimate growth (each is a series for good): memory may grow in
    // proportion to the series added after the baseline, on top of the 15 % allowance.
    let series_base = median(base.iter().map(|s| s.series as u64).collect()) as f64;
    let series_growth = ((end.series - series_base) / series_base.max(1.0)).max(0.0);
    eprintln!(
        "soak: {:?}, {} scrapes, slowest {slowest:?}",
        duration,
        samples.len()
    );
    for s in samples.iter().step_by((samples.len() / 10).max(1)) {
        eprintln!(
            "  t={:>4.0}s rss={:>6} KiB sessions={} remembered_rows={} rows_ingested={} series={}",
            s.at.as_secs_f64(),
            s.rss_kib,
            s.sessions,
            s.remembered,
            s.rows,
            s.series
        );
    }
    eprintln!(
        "soak: rows ingested {} -> {}; RSS at start {} KiB, baseline (60-67 %) {baseline} KiB, \
         median of the last tenth {end_median} KiB ({:+.1} %), peak of the last third {peak} KiB; remembered rows {rem_base} -> at most \
         {rem_peak}; series {series_base} -> {} ({:+.1} %); sessions at most {max_sessions}",
        first.rows,
        end.rows,
        first.rss_kib,
        (end_median as f64 / baseline as f64 - 1.0) * 100.0,
        end.series,
        series_growth * 100.0
    );
    assert!(
        end.rows - first.rows >= 150.0 * duration.as_secs_f64() * 0.8,
        "the traffic did not flow: {} rows in {duration:?}",
        end.rows - first.rows
    );
    assert!(
        rem_peak <= rem_base * 1.25 + 1000.0,
        "remembered rows still growing in the last third ({rem_base} -> {rem_peak}): no steady \
         state, the memory criterion would be meaningless"
    );
    assert!(
        end_median as f64 <= baseline as f64 * (1.10 + series_growth) + 2048.0,
        "resident memory grows: baseline {baseline} KiB, median of the last tenth {end_median} \
         KiB, while the series grew by {:.1} %",
        series_growth * 100.0
    );
    assert!(max_sessions <= POOL);
}
