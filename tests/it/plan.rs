//! `plan` against a real database: it reads every row, its series are upper bounds of what the
//! exporter then serves, its resident memory is an upper bound of the exporter's peak, and under
//! a budget it predicts the very fold level the exporter reaches.

use std::process::Command;
use std::time::{Duration, Instant};

use super::exporter::{Exporter, BIN, FAST, SEED_BIN};
use super::support::{fresh_db, Schema};

const ROWS: u64 = 20_000;

fn plan(url: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["--db-url", url])
        .args(extra)
        .arg("plan")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run plan");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "plan failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The number after `prefix` on the line that has it.
fn figure(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_end_matches([',', '.', ':']).parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
}

/// "1.5 GiB" / "300.0 MiB" after `prefix`, in bytes.
fn size(text: &str, prefix: &str) -> f64 {
    let rest = text
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    let mut words = rest.split_whitespace();
    let n: f64 = words.next().and_then(|w| w.parse().ok()).expect("a number");
    match words.next().map(|u| u.trim_end_matches([',', '.'])) {
        Some("GiB") => n * (1u64 << 30) as f64,
        Some("MiB") => n * (1u64 << 20) as f64,
        u => panic!("unit {u:?} in {rest}"),
    }
}

async fn counted(e: &Exporter) -> super::exporter::Scrape {
    e.wait_ready(Duration::from_secs(120)).await;
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        if s.value("litellm_exporter_rows_ingested_total") == Some(ROWS as f64) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return e.scrape().await;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_bounds_what_the_exporter_needs_and_predicts_its_fold() {
    let db = fresh_db(Schema::New);
    let seeded = Command::new(SEED_BIN)
        .args([
            "--db-url", &db.url, "--rows", "20000", "--days", "3", "--keys", "2000", "--users",
            "1500", "--teams", "100",
        ])
        .output()
        .expect("seed");
    assert!(seeded.status.success());

    let unlimited = plan(&db.url, &["--memory.budget", "none"]);
    assert_eq!(figure(&unlimited, "Read "), ROWS as f64, "{unlimited}");
    assert!(unlimited.contains("No memory budget"), "{unlimited}");
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.json");
    let e = Exporter::start(
        &db.url,
        &[
            FAST,
            &[
                "--memory.budget",
                "none",
                "--state.file",
                state.to_str().expect("utf8"),
            ][..],
        ]
        .concat(),
    );
    let s = counted(&e).await;
    // Per family, the plan's series bound the exporter's.
    for line in unlimited.lines().filter(|l| l.starts_with("  litellm_")) {
        let (family, n) = line.trim().split_once(": ").expect("family: n");
        let n: f64 = n.parse().expect("a count");
        let served = s
            .named("litellm_exporter_series")
            .find(|x| x.labels.get("family").map(String::as_str) == Some(family))
            .map_or(0.0, |x| x.value);
        assert!(
            served <= n,
            "{family}: the exporter serves {served} series, the plan said at most {n}"
        );
    }
    let resident = size(&unlimited, "resident memory up to ");
    let peak = e.peak_rss() as f64;
    assert!(peak <= resident, "peak {peak} above the plan's {resident}");
    assert_eq!(e.stop(), 0);
    // The state file's size is an estimate, not a bound: within a factor of two.
    let saved = std::fs::metadata(&state).expect("state saved").len() as f64;
    let planned = size(&unlimited, "state file about ");
    eprintln!("plan: state file {saved} bytes, planned {planned}; peak {peak}, planned {resident}");
    assert!(
        saved / 2.0 <= planned && planned <= saved * 2.0,
        "state file {saved} bytes, the plan said {planned}"
    );

    // Under a budget that folds, the plan's level is the exporter's.
    let budget = ["--memory.budget", "72MiB"];
    let folded = plan(&db.url, &budget);
    let level = figure(&folded, "fold level ");
    assert!(level >= 1.0, "{folded}");
    let e = Exporter::start(&db.url, &[FAST, &budget[..]].concat());
    let s = counted(&e).await;
    assert_eq!(
        s.value("litellm_exporter_memory_fold_level"),
        Some(level),
        "{folded}"
    );
}
