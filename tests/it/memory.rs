//! The memory guard against the real binary and LiteLLM's default label sets: on a database that
//! needs several times the budget, the exporter's peak resident memory stays under it, the label
//! combinations beyond it fold into "other" series, every family's sum still equals the unguarded
//! exporter's (which equals SQL), and two exporters with the same budget, or a restart, fold the
//! same way. Also: the default budget comes from the container's cgroup limit (cgroup v1 here).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use super::exporter::{Exporter, Scrape, BIN, FAST, SEED_BIN};
use super::support::{fresh_db, Schema, TestDb};

const READY: Duration = Duration::from_secs(240);
const ROWS: u64 = 40_000;

/// A database whose default-label exposition needs a few hundred megabytes: many keys, users
/// and customers, so that label combinations are counted in tens of thousands.
fn wide_database() -> TestDb {
    let db = fresh_db(Schema::New);
    let out = Command::new(SEED_BIN)
        .args([
            "--db-url",
            &db.url,
            "--rows",
            &ROWS.to_string(),
            "--days",
            "3",
            "--keys",
            "4000",
            "--users",
            "3000",
            "--customers",
            "2000",
            "--teams",
            "200",
        ])
        .output()
        .expect("run litellm-seed");
    assert!(
        out.status.success(),
        "seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

/// Waits until the exporter is ready and has counted every row.
async fn counted(e: &Exporter) -> Scrape {
    e.wait_ready(READY).await;
    let start = Instant::now();
    loop {
        let s = e.scrape().await;
        if s.value("litellm_exporter_rows_ingested_total") == Some(ROWS as f64) {
            // One more poll, so that the render of the last rows is what is served.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return e.scrape().await;
        }
        assert!(start.elapsed() < READY, "{}", e.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every ledger family's sum over its series (histogram buckets per `le`): the samples that
/// `Scrape::counters` takes, the entity gauges (budgets, which move with the clock) left out.
fn family_sums(s: &Scrape) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for x in s.named_prefix("litellm_") {
        let ledger = !x.name.starts_with("litellm_exporter_")
            && ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .any(|end| x.name.ends_with(end));
        if !ledger {
            continue;
        }
        let key = match x.labels.get("le") {
            Some(le) => format!("{}{{le={le}}}", x.name),
            None => x.name.clone(),
        };
        *out.entry(key).or_insert(0.0) += x.value;
    }
    out
}

/// The ledger's series as served (counters and histograms), for comparing two exporters.
fn ledger_series(s: &Scrape) -> BTreeMap<String, f64> {
    s.counters()
}

fn series_with_other_team(s: &Scrape) -> usize {
    s.named_prefix("litellm_")
        .filter(|x| x.labels.get("team").map(String::as_str) == Some("other"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_budget_default_labels_fold_exactly_and_the_same_everywhere() {
    let db = wide_database();

    // Unguarded: what the default label sets need on this database.
    let free = Exporter::start(&db.url, &[FAST, &["--memory.budget", "none"][..]].concat());
    let unguarded = counted(&free).await;
    let unguarded_peak = free.peak_rss();
    assert_eq!(
        unguarded.value("litellm_exporter_memory_budget_bytes"),
        Some(0.0)
    );
    assert_eq!(series_with_other_team(&unguarded), 0);
    drop(free);

    let budget: u64 = 96 << 20;
    assert!(
        unguarded_peak > 3 * budget,
        "the test database needs only {unguarded_peak} bytes unguarded; it must need several times the budget"
    );
    let args = [FAST, &["--memory.budget", "96MiB"][..]].concat();
    let a = Exporter::start(&db.url, &args);
    let b = Exporter::start(&db.url, &args);
    let sa = counted(&a).await;
    let sb = counted(&b).await;
    let (peak_a, peak_b) = (a.peak_rss(), b.peak_rss());
    eprintln!(
        "memory guard: unguarded peak {} MiB; budget {} MiB; guarded peaks {} and {} MiB; classes estimate {} MiB; fold level {:?}; series {} of {}",
        unguarded_peak >> 20,
        budget >> 20,
        peak_a >> 20,
        peak_b >> 20,
        sa.value("litellm_exporter_memory_classes_estimate_bytes").unwrap_or(0.0) as u64 >> 20,
        sa.value("litellm_exporter_memory_fold_level"),
        ledger_series(&sa).len(),
        ledger_series(&unguarded).len(),
    );
    assert!(
        peak_a < budget && peak_b < budget,
        "{peak_a} {peak_b} vs {budget}"
    );

    // It folded, said so, and the overflow series carry the rest.
    assert!(
        sa.value("litellm_exporter_memory_fold_level")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        sa.value("litellm_exporter_memory_budget_bytes"),
        Some(budget as f64)
    );
    assert!(
        sa.value("litellm_exporter_memory_folded_rows_total")
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(series_with_other_team(&sa) > 0);
    assert!(a
        .log_text()
        .contains("Memory guard: the label combinations seen need more"));

    // Every family's sum is the unguarded one's: exact, only fewer series.
    let (want, got) = (family_sums(&unguarded), family_sums(&sa));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        let g = got[k];
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{k}: guarded {g} vs unguarded {w}"
        );
    }
    assert!(ledger_series(&sa).len() < ledger_series(&unguarded).len());

    // Two exporters with the same budget fold the same way; so does a rebuild.
    assert_eq!(ledger_series(&sa), ledger_series(&sb));
    drop(a);
    let again = Exporter::start(&db.url, &args);
    let sr = counted(&again).await;
    assert_eq!(ledger_series(&sr), ledger_series(&sb));
}

/// The memory limit of a cgroup v1 memory controller the test creates, and the exporter started
/// inside it: the default budget is 80% of that limit, and the process stays under the limit.
#[tokio::test]
async fn the_default_budget_comes_from_the_cgroup_limit() {
    let root = std::path::Path::new("/sys/fs/cgroup/memory");
    assert!(
        root.join("memory.limit_in_bytes").exists(),
        "this test needs the cgroup v1 memory controller at {} (writable as root)",
        root.display()
    );
    let group = root.join(format!("litellm-exporter-test-{}", std::process::id()));
    std::fs::create_dir_all(&group).expect("create a memory cgroup");
    let limit: u64 = 256 << 20;
    std::fs::write(group.join("memory.limit_in_bytes"), limit.to_string()).expect("set the limit");
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Remove(group.clone());

    let db = fresh_db(Schema::New);
    let procs = group.join("cgroup.procs");
    // The shell moves itself into the group, then becomes the exporter: the exporter starts
    // inside the limit and reads it from /proc/self/cgroup.
    let script = format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display());
    let e = Exporter::spawn_wrapped(
        "sh",
        &["-c", &script, BIN],
        &["--db-url", &db.url, "--poll-interval", "200ms"],
    );
    e.wait_ready(Duration::from_secs(60)).await;
    let s = e.scrape().await;
    assert_eq!(
        s.value("litellm_exporter_memory_budget_bytes"),
        Some((limit / 100 * 80) as f64)
    );
    assert!(
        e.log_text().contains("of the container memory limit"),
        "{}",
        e.log_text()
    );
    let members = std::fs::read_to_string(&procs).expect("cgroup.procs");
    assert!(
        members.lines().any(|p| p.trim() == e.pid().to_string()),
        "the exporter is not in the test's cgroup: {members}"
    );
    drop(e);
}
