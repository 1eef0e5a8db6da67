//! The `plan` subcommand: what the exporter will need on a database, under a configuration,
//! before it runs there: label combinations, series per family, exposition size, resident
//! memory, state-file size, and what its memory budget would fold. It reads the spend log once,
//! the way a cold start does (`startTime` chunks cut at a row count, one short read-only
//! transaction each, the exporter's own projection), but keeps only a few hashes per label
//! combination, so it runs in a fraction of the memory the exporter would need.
//!
//! The figures are the memory guard's own estimates (`ledger::fold`): upper bounds by design
//! (a series is costed as if every family wrote it; measured, the exporter uses about half).

use std::time::Instant;

use anyhow::{bail, Context};

use crate::budget::{human, MemoryBudget};
use crate::config::Config;
use crate::db;
use crate::ledger::fold::{self, FoldRule};
use crate::ledger::packed::KeyView;
use crate::ledger::read;
use crate::schema::Schema;

/// Rows per read: a chunk of the spend log stays well inside `statement_timeout`.
const CHUNK_ROWS: u64 = 200_000;
/// A label combination in the state file: its key spelled out with every field's name, its
/// totals and histogram buckets as JSON. Measured 560 to 900 bytes with LiteLLM's default label
/// sets; the values' own text comes on top.
const STATE_BYTES_PER_CLASS: u64 = 900;
/// A remembered row in the state file (its id, start, version, values).
const STATE_BYTES_PER_ROW: u64 = 200;
/// The process without ledger: runtime, buffers, HTTP side (an idle exporter is ~15 MB).
const PROCESS_BYTES: u64 = 32 << 20;

/// What one label combination is made of, for the fold: its label hash and its series in every
/// label list that counts it (`u64::MAX`: not counted there).
struct Print {
    hash: u64,
    series: Box<[u64]>,
}

#[derive(Debug)]
pub struct FoldPlan {
    pub budget: MemoryBudget,
    pub level: u32,
    pub kept: u64,
    pub series: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Plan {
    pub rows: u64,
    pub seconds: f64,
    pub classes: u64,
    /// Per exported family: its series (an upper bound).
    pub series: Vec<(&'static str, u64)>,
    /// Exposition bytes, all families (an upper bound).
    pub text_bytes: u64,
    /// Resident memory the exporter needs without folding (an upper bound).
    pub resident_bytes: u64,
    pub state_bytes: u64,
    /// Rows inside the lateness window: remembered in memory and in the state file.
    pub recent_rows: u64,
    pub fold: Option<FoldPlan>,
}

/// Reads the spend log under `cfg` and works out the plan.
pub async fn run(cfg: &Config) -> anyhow::Result<Plan> {
    let started = Instant::now();
    let pool = db::pool(&cfg.target, &cfg.pool);
    let mut client = pool.get().await.context("cannot connect")?;
    let schema = Schema::detect(&client).await.context("schema detection")?;
    if !schema.has_table("LiteLLM_SpendLogs") {
        bail!("LiteLLM_SpendLogs is missing (not a LiteLLM database, or another schema?)");
    }
    let p = cfg.projection(&schema);
    // The rule's costs, whatever the budget (a huge one when there is none).
    let rule = FoldRule::new(u64::MAX, &cfg.selection, &cfg.thresholds);
    let scan = Scan::read(cfg, &mut client, &p, &rule).await?;

    let at = |level: u32| footprint(&scan.prints, &scan.texts, level);
    let all = at(0);
    let mut series: Vec<(&'static str, u64)> = Vec::new();
    for (s, n) in all.per_set.iter().enumerate() {
        for f in rule.families(s) {
            series.push((f, *n));
        }
    }
    let reserve = PROCESS_BYTES + scan.recent_rows * crate::budget::ROW_BYTES;
    let fold = cfg.memory_budget.clone().map(|budget| {
        let limit = budget.classes_bytes();
        let mut level = 0;
        let mut f = all.clone();
        while f.bytes > limit && level < 65 {
            level += 1;
            f = at(level);
        }
        FoldPlan {
            budget,
            level,
            kept: f.classes,
            series: f.per_set.iter().sum(),
            bytes: f.bytes,
        }
    });
    let classes = scan.prints.len() as u64;
    Ok(Plan {
        rows: scan.rows,
        seconds: started.elapsed().as_secs_f64(),
        classes,
        series,
        text_bytes: all.text,
        resident_bytes: reserve + all.bytes,
        state_bytes: classes * STATE_BYTES_PER_CLASS
            + scan.state_text
            + scan.recent_rows * STATE_BYTES_PER_ROW,
        recent_rows: scan.recent_rows,
        fold,
    })
}

/// What one read of the spend log keeps: per label combination its fold hash and its series in
/// each label list, per label list each series' text bytes, and counts.
struct Scan {
    rows: u64,
    /// Rows inside the lateness window.
    recent_rows: u64,
    prints: Vec<Print>,
    texts: Vec<hashbrown::HashMap<u64, u64, ahash::RandomState>>,
    /// The combinations' dimension text, as the state file spells it out.
    state_text: u64,
}

impl Scan {
    /// Reads the spend log the way a cold start does: `startTime` chunks cut at a row count, one
    /// short read-only transaction each.
    async fn read(
        cfg: &Config,
        client: &mut deadpool_postgres::Object,
        p: &read::Projection,
        rule: &FoldRule,
    ) -> anyhow::Result<Scan> {
        let sets = rule.sets();
        // Combinations told apart by a 64-bit hash of their whole key, not kept (a collision in
        // ten million is a few in a million: negligible for a plan).
        let key_hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut classes: hashbrown::HashSet<u64, ahash::RandomState> = Default::default();
        let mut scan = Scan {
            rows: 0,
            recent_rows: 0,
            prints: Vec::new(),
            // Per label list: each series' text bytes.
            texts: vec![Default::default(); sets],
            state_text: 0,
        };

        let tx = db::read_tx(client).await?;
        let now_ms = read::snapshot(&tx).await?.now_ms;
        tx.commit().await?;
        let recent_from = now_ms - cfg.tail.lateness.as_millis() as i64;
        let mut lo: Option<i64> = None;
        loop {
            let tx = db::read_tx(client).await?;
            let hi = read::chunk_end(&tx, p, lo, None, CHUNK_ROWS)
                .await?
                .map(|h| lo.map_or(h, |l| h.max(l + 1)));
            let n = read::each_row(&tx, p, lo, hi, 0, 0, |r| {
                if r.start_ms >= recent_from {
                    scan.recent_rows += 1;
                }
                if !classes.insert(key_hasher.hash_one(&r.key)) {
                    return;
                }
                let k = &r.key;
                let mut series = vec![u64::MAX; sets].into_boxed_slice();
                for (s, id) in series.iter_mut().enumerate() {
                    if rule.counts(s, k) {
                        *id = rule.series_id(s, k);
                        scan.texts[s]
                            .entry(*id)
                            .or_insert_with(|| rule.series_text(s, k));
                    }
                }
                scan.state_text += (0..crate::ledger::packed::FIELDS)
                    .map(|i| k.field(i).len() as u64)
                    .sum::<u64>();
                scan.prints.push(Print {
                    hash: fold::stable_hash(k),
                    series,
                });
            })
            .await?;
            scan.rows += n;
            tx.commit().await?;
            match hi {
                Some(h) => lo = Some(h),
                None => break,
            }
        }
        Ok(scan)
    }
}

#[derive(Clone)]
struct Footprint {
    classes: u64,
    per_set: Vec<u64>,
    text: u64,
    bytes: u64,
}

/// What the classes kept at `level` cost: `fold::Footprint`'s sum, from the prints.
fn footprint(
    prints: &[Print],
    texts: &[hashbrown::HashMap<u64, u64, ahash::RandomState>],
    level: u32,
) -> Footprint {
    let mut seen: Vec<hashbrown::HashSet<u64, ahash::RandomState>> =
        vec![Default::default(); texts.len()];
    let mut f = Footprint {
        classes: 0,
        per_set: vec![0; texts.len()],
        text: 0,
        bytes: 0,
    };
    for p in prints.iter().filter(|p| fold::kept(p.hash, level)) {
        f.classes += 1;
        f.bytes += FoldRule::CLASS_BYTES;
        for (s, id) in p.series.iter().enumerate() {
            if *id != u64::MAX && seen[s].insert(*id) {
                let text = texts[s][id];
                f.per_set[s] += 1;
                f.text += text;
                f.bytes += FoldRule::series_cost(text);
            }
        }
    }
    f
}

impl Plan {
    /// The report `plan` prints.
    pub fn report(&self, cfg: &Config) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Read {} spend-log rows of {} in {:.1} s.",
            self.rows, cfg.target.display, self.seconds
        );
        let _ = writeln!(
            out,
            "Label combinations: {} ({} rows in the last {} are remembered).",
            self.classes,
            self.recent_rows,
            humantime::format_duration(cfg.tail.lateness)
        );
        let _ = writeln!(out, "Series per family (at most):");
        for (f, n) in &self.series {
            let _ = writeln!(out, "  {f}: {n}");
        }
        let total: u64 = self.series.iter().map(|(_, n)| n).sum();
        let _ = writeln!(
            out,
            "Without folding: {} series, /metrics up to {}, resident memory up to {}, state file about {}.",
            total,
            human(self.text_bytes),
            human(self.resident_bytes),
            human(self.state_bytes)
        );
        match &self.fold {
            None => {
                let _ = writeln!(
                    out,
                    "No memory budget (no --memory.budget and no container memory limit): the exporter will use what it needs."
                );
            }
            Some(f) if f.level == 0 => {
                let _ = writeln!(
                    out,
                    "Memory budget {} ({}): everything fits, nothing folds.",
                    human(f.budget.bytes),
                    f.budget.source
                );
            }
            Some(f) => {
                let _ = writeln!(
                    out,
                    "Memory budget {} ({}): fold level {}: {} of {} label combinations keep series of their own ({} series, {} estimated); the others count in \"other\" series. Narrow the labels or raise the budget to keep more.",
                    human(f.budget.bytes),
                    f.budget.source,
                    f.level,
                    f.kept,
                    self.classes,
                    f.series,
                    human(f.bytes)
                );
            }
        }
        out
    }
}
