//! The `backfill` subcommand: the ledger's counters and histograms as the live exporter would have
//! served them at every step of a past time range, written as OpenMetrics files for
//! `promtool tsdb create-blocks-from openmetrics`.
//!
//! Continuity with the live exporter comes from using its own code: rows are read with the same
//! projection (`ledger::read`), counted by the same `Ledger` (so the same accounting rules and
//! integer units), and mapped to series by the same `LedgerRenderer` mapping, under the same
//! configuration. The value at step `t` counts every row with `startTime <= t`; the live exporter
//! counts every row in the table, so the last step continues into its first scrape.
//!
//! Memory is bounded by the number of label classes, not rows: rows are read in `startTime`
//! windows (one read-only transaction each), sorted, and folded into the cumulative ledger; only
//! per-series sums are kept besides it. Samples go to one temporary file per family while a
//! file chunk (a day by default) is written, so that every family's samples are contiguous in the
//! final file without holding them in memory.
//!
//! Volume: a sample is written when a series' value changes, and every served series at every
//! multiple of `heartbeat` (less than Prometheus's 5-minute lookback), so that instant queries
//! and graphs at any time see the value the live exporter would have served, and windows that
//! start on a heartbeat (hours, days) start on a sample, where `increase()` does not extrapolate.
//! Histogram series are written whole (all their lines) whenever one of them changes.

#[cfg(test)]
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tracing::info;

use crate::catalogue::{Kind, LEDGER_FAMILIES};
use crate::config::Config;
use crate::db;
use crate::entities;
use crate::ledger::read;
use crate::ledger::values::{ClassAcc, HistAcc, Thresholds};
use crate::ledger::Ledger;
use crate::render::{
    counter_served, counter_units, counter_value, fold, histogram_served, label_block, other_block,
    push_header, HistLines, LedgerRenderer,
};
use crate::schema::Schema;
use crate::selection::Selection;

/// What to write, validated.
#[derive(Debug, Clone)]
pub struct Options {
    /// First and last instant (ms since the epoch, UTC); steps are the multiples of `step_ms`
    /// in between.
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    /// Write an unchanged series again once its last sample is this old; 0 = only changes.
    pub heartbeat_ms: i64,
    /// One output file per this much time (aligned to the epoch, so to Prometheus's blocks).
    pub file_ms: i64,
    pub out: PathBuf,
    /// Target labels Prometheus adds when scraping (`job`, `instance`), added to every series.
    pub labels: Vec<(String, String)>,
}

const HOUR_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Prometheus's default lookback: a sample older than this is not seen by an instant query.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// `now`, `now-30d`, a date (`2026-01-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let d = humantime::parse_duration(ago).map_err(|e| format!("{s:?}: {e}"))?;
        return Ok(now_ms - d.as_millis() as i64);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
        return t.ok_or_else(|| format!("{s:?}: not a valid date"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{s:?}: expected now, now-<duration>, YYYY-MM-DD or an RFC 3339 time"))
}

/// `name=value` with a valid Prometheus label name.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (n, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected name=value, e.g. job=litellm"))?;
    let ok = n
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if n.is_empty() || !ok || n.starts_with("__") {
        return Err(format!("{n:?} is not a valid label name"));
    }
    Ok((n.to_string(), v.to_string()))
}

impl Options {
    /// The first and the last step: the multiples of `step_ms` in [from, to].
    fn steps(&self) -> anyhow::Result<(i64, i64)> {
        let step = self.step_ms;
        let first =
            self.from_ms.div_euclid(step) * step + if self.from_ms % step == 0 { 0 } else { step };
        if first > self.to_ms {
            bail!("no step between --from and --to");
        }
        Ok((first, self.to_ms.div_euclid(step) * step))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.step_ms < 1000 || self.step_ms % 1000 != 0 {
            return Err("--step must be a whole number of seconds".into());
        }
        if self.to_ms < self.from_ms {
            return Err("--to is before --from".into());
        }
        if self.heartbeat_ms != 0
            && (self.heartbeat_ms < self.step_ms || self.heartbeat_ms % self.step_ms != 0)
        {
            return Err("--heartbeat must be 0 or a multiple of --step".into());
        }
        if self.heartbeat_ms >= LOOKBACK_MS {
            return Err(
                "--heartbeat must be below Prometheus's 5-minute lookback (or 0 for changes only)"
                    .into(),
            );
        }
        if self.file_ms < self.step_ms || self.file_ms % self.step_ms != 0 {
            return Err("--file-span must be a multiple of --step".into());
        }
        let mut names: Vec<&str> = self.labels.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("a --label name is given twice".into());
        }
        Ok(())
    }

    /// The default heartbeat: the largest multiple of the step below the lookback that divides
    /// an hour (so that every hour and day starts with a sample of every series), else the
    /// largest multiple of the step below the lookback.
    pub fn default_heartbeat(step_ms: i64) -> i64 {
        let below = (LOOKBACK_MS - 1) / step_ms;
        (1..=below)
            .rev()
            .map(|n| n * step_ms)
            .find(|h| 3600 * 1000 % h == 0)
            .unwrap_or(below * step_ms)
    }
}

/// What a run wrote.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    pub samples: u64,
    pub classes: usize,
    pub steps: u64,
}

/// One family's series as the live exporter would serve them, kept incrementally.
#[derive(Default)]
struct FamilyState {
    /// Counter units per series (counters) or histogram sums (histograms).
    units: Vec<u128>,
    hists: Vec<HistAcc>,
    rows: Vec<u64>,
    live: Vec<bool>,
    folded: Vec<bool>,
    dirty: Vec<bool>,
    /// Step index of the last written sample, plus one (0: never written).
    written: Vec<u64>,
    live_n: usize,
    any_folded: bool,
    other_units: u128,
    other_hist: HistAcc,
    other_written: u64,
    other_dirty: bool,
    /// The series whose labels are all "other".
    other_block: String,
    resplit: bool,
}

/// The series id of a family's "other" series (the series cap).
const OTHER: u32 = u32::MAX;

/// Adds `new - old` (a class's growth) to `into`.
fn add_growth(into: &mut HistAcc, new: &HistAcc, old: &HistAcc) {
    if into.buckets.len() < new.buckets.len() {
        into.buckets.resize(new.buckets.len(), 0);
    }
    into.count += new.count - old.count;
    into.sum += new.sum - old.sum;
    for (i, b) in new.buckets.iter().enumerate() {
        into.buckets[i] += b - old.buckets.get(i).copied().unwrap_or(0);
    }
}

/// The series sums of every family, the per-family sample files of the current output file, and
/// the heartbeat schedule.
struct Series {
    fams: Vec<FamilyState>,
    /// Each class's totals as last folded into the series sums.
    seen: Vec<ClassAcc>,
    dirty: Vec<(usize, u32)>,
    /// `job="x",instance="y"` (escaped), prepended to every label block.
    prefix: String,
    writers: Vec<Option<BufWriter<File>>>,
    /// Where the per-family files of the current output file are.
    dir: PathBuf,
    /// Per family: the histogram line writer shared with `render` (None for counters).
    hist_lines: Vec<Option<HistLines>>,
    samples: u64,
}

impl Series {
    fn new(sel: &Selection, labels: &[(String, String)], dir: &Path, t: &Thresholds) -> Self {
        let fams = LEDGER_FAMILIES
            .iter()
            .enumerate()
            .map(|(f, _)| FamilyState {
                other_block: other_block(sel, f),
                ..Default::default()
            })
            .collect();
        let names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
        let block = label_block(&names, &values);
        let prefix = if block.is_empty() {
            String::new()
        } else {
            block[1..block.len() - 1].to_string()
        };
        Series {
            fams,
            seen: Vec::new(),
            dirty: Vec::new(),
            prefix,
            writers: LEDGER_FAMILIES.iter().map(|_| None).collect(),
            dir: dir.to_path_buf(),
            hist_lines: LEDGER_FAMILIES
                .iter()
                .map(|fam| match fam.kind {
                    Kind::Histogram(h) => Some(HistLines::new(fam.name, &t.bounds_s[h.index()])),
                    Kind::Counter(_) => None,
                })
                .collect(),
            samples: 0,
        }
    }

    /// Folds the growth of the `touched` classes into their series and marks those dirty.
    fn absorb(&mut self, ledger: &Ledger, r: &LedgerRenderer, touched: &[u32]) {
        let classes = ledger.classes();
        if self.seen.len() < classes.len() {
            self.seen.resize(classes.len(), ClassAcc::default());
        }
        for &c in touched {
            let c = c as usize;
            let acc = &classes[c].acc;
            let old = &self.seen[c];
            if acc == old {
                continue;
            }
            for (f, fam) in LEDGER_FAMILIES.iter().enumerate() {
                let Some(id) = r.series_of(f, c, &classes[c]) else {
                    continue;
                };
                let st = &mut self.fams[f];
                let n = r.blocks(f).len();
                if st.rows.len() < n {
                    st.units.resize(n, 0);
                    st.rows.resize(n, 0);
                    st.live.resize(n, false);
                    st.folded.resize(n, false);
                    st.dirty.resize(n, false);
                    st.written.resize(n, 0);
                    if matches!(fam.kind, Kind::Histogram(_)) {
                        st.hists.resize(n, HistAcc::default());
                    }
                }
                let i = id;
                let d_rows = acc.rows - old.rows;
                let changed = match fam.kind {
                    Kind::Counter(v) => {
                        let d = counter_units(v, acc) - counter_units(v, old);
                        st.units[i] += d;
                        if st.folded[i] {
                            st.other_units += d;
                        }
                        d > 0 || d_rows > 0
                    }
                    Kind::Histogram(h) => {
                        let hi = h.index();
                        add_growth(&mut st.hists[i], acc.hist(hi), old.hist(hi));
                        if st.folded[i] {
                            add_growth(&mut st.other_hist, acc.hist(hi), old.hist(hi));
                        }
                        acc.hist(hi) != old.hist(hi)
                    }
                };
                st.rows[i] += d_rows;
                if changed && !st.dirty[i] {
                    st.dirty[i] = true;
                    self.dirty.push((f, id as u32));
                }
                if changed && st.folded[i] {
                    st.other_dirty = true;
                }
            }
            self.seen[c] = acc.clone();
        }
    }

    /// Writes the samples of step `k` (time `t_ms`): every changed series, then every series due
    /// for a heartbeat.
    fn emit(
        &mut self,
        k: u64,
        t_ms: i64,
        hb_ms: i64,
        r: &LedgerRenderer,
        sel: &Selection,
    ) -> std::io::Result<()> {
        let ts = if t_ms % 1000 == 0 {
            (t_ms / 1000).to_string()
        } else {
            format!("{:.3}", t_ms as f64 / 1000.0)
        };
        self.mark_served(sel);
        self.refold(r, sel);
        let dirty = std::mem::take(&mut self.dirty);
        for &(f, id) in &dirty {
            self.fams[f].dirty[id as usize] = false;
            let st = &self.fams[f];
            if st.live[id as usize] && !st.folded[id as usize] {
                self.write(f, id, k, &ts, r)?;
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
        for f in 0..self.fams.len() {
            if self.fams[f].other_dirty {
                self.fams[f].other_dirty = false;
                self.write(f, OTHER, k, &ts, r)?;
            }
        }
        // Heartbeats: at every multiple of the heartbeat, every served series not written yet.
        if hb_ms > 0 && t_ms.rem_euclid(hb_ms) == 0 {
            for f in 0..self.fams.len() {
                for i in 0..self.fams[f].live.len() {
                    let st = &self.fams[f];
                    if st.live[i] && !st.folded[i] && st.written[i] != k + 1 {
                        self.write(f, i as u32, k, &ts, r)?;
                    }
                }
                if self.fams[f].any_folded && self.fams[f].other_written != k + 1 {
                    self.write(f, OTHER, k, &ts, r)?;
                }
            }
        }
        Ok(())
    }

    /// Marks the changed series that are now served at all (`render`'s own rules); a family
    /// whose served series grew past the cap is folded again.
    fn mark_served(&mut self, sel: &Selection) {
        for &(f, id) in &self.dirty {
            let st = &mut self.fams[f];
            let i = id as usize;
            let live = match LEDGER_FAMILIES[f].kind {
                Kind::Counter(v) => counter_served(v, st.rows[i], st.units[i]),
                Kind::Histogram(_) => histogram_served(&st.hists[i]),
            };
            if live && !st.live[i] {
                st.live[i] = true;
                st.live_n += 1;
                if sel.max_series.is_some_and(|cap| st.live_n > cap) {
                    st.resplit = true;
                }
            }
        }
    }

    /// The series cap: `render`'s own `fold`, redone only where the served set grew; a change
    /// of the folded set recomputes the `other` series' totals.
    fn refold(&mut self, r: &LedgerRenderer, sel: &Selection) {
        for (f, st) in self.fams.iter_mut().enumerate() {
            if !st.resplit {
                continue;
            }
            st.resplit = false;
            let (_, folded) = fold(r.blocks(f), &st.live, sel.max_series, &st.other_block);
            let mut now = vec![false; st.live.len()];
            for i in folded {
                now[i] = true;
            }
            if now != st.folded {
                st.folded = now;
                st.any_folded = true;
                st.other_units = 0;
                st.other_hist = HistAcc::default();
                for i in 0..st.folded.len() {
                    if st.folded[i] {
                        st.other_units += st.units[i];
                        if let Some(h) = st.hists.get(i) {
                            st.other_hist.merge(h);
                        }
                    }
                }
                st.other_dirty = true;
            }
        }
    }

    /// Writes one series (all lines of a histogram) at step `k`.
    fn write(
        &mut self,
        f: usize,
        id: u32,
        k: u64,
        ts: &str,
        r: &LedgerRenderer,
    ) -> std::io::Result<()> {
        if self.writers[f].is_none() {
            let file = File::create(self.dir.join(format!(".family-{f}.tmp")))?;
            self.writers[f] = Some(BufWriter::with_capacity(1 << 16, file));
        }
        let mut text = String::with_capacity(256);
        self.samples += self.lines(f, id, Some(ts), r, &mut text);
        let st = &mut self.fams[f];
        if id == OTHER {
            st.other_written = k + 1;
        } else {
            st.written[id as usize] = k + 1;
        }
        let w = self.writers[f].as_mut().expect("created above");
        w.write_all(text.as_bytes())
    }

    /// The sample lines of one series, as `render` writes them plus the target labels and a
    /// timestamp. Returns the number of lines.
    fn lines(
        &self,
        f: usize,
        id: u32,
        ts: Option<&str>,
        r: &LedgerRenderer,
        out: &mut String,
    ) -> u64 {
        use std::fmt::Write as _;
        let fam = &LEDGER_FAMILIES[f];
        let st = &self.fams[f];
        let text;
        let block: &str = if id == OTHER {
            &st.other_block
        } else {
            text = r.blocks(f).text(id as usize);
            &text
        };
        // The block's labels without braces, after the target labels.
        let inner = if block.is_empty() {
            ""
        } else {
            &block[1..block.len() - 1]
        };
        let sep = if !self.prefix.is_empty() && !inner.is_empty() {
            ","
        } else {
            ""
        };
        let labels = format!("{}{sep}{inner}", self.prefix);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let ts = ts.map(|t| format!(" {t}")).unwrap_or_default();
        match fam.kind {
            Kind::Counter(v) => {
                let units = if id == OTHER {
                    st.other_units
                } else {
                    st.units[id as usize]
                };
                let _ = writeln!(
                    out,
                    "{}_total{braces} {}{ts}",
                    fam.name,
                    counter_value(v, units)
                );
                1
            }
            Kind::Histogram(_) => {
                let acc = if id == OTHER {
                    &st.other_hist
                } else {
                    &st.hists[id as usize]
                };
                let lines = self.hist_lines[f]
                    .as_ref()
                    .expect("built for every histogram");
                lines.push(out, &braces, acc, &ts);
                lines.count()
            }
        }
    }

    /// Every served series' lines without timestamps, sorted (what `render` would serve).
    #[cfg(test)]
    fn served(&self, r: &LedgerRenderer) -> Vec<String> {
        let mut text = String::new();
        for (f, st) in self.fams.iter().enumerate() {
            for i in 0..st.live.len() {
                if st.live[i] && !st.folded[i] {
                    self.lines(f, i as u32, None, r, &mut text);
                }
            }
            if st.any_folded {
                self.lines(f, OTHER, None, r, &mut text);
            }
        }
        let mut v: Vec<String> = text.lines().map(String::from).collect();
        v.sort();
        v
    }

    /// Closes the family files and assembles them into `path`: per family its metadata once and
    /// its samples, then `# EOF`. Returns whether anything was written.
    fn finish_file(&mut self, path: &Path) -> std::io::Result<bool> {
        if self.writers.iter().all(Option::is_none) {
            return Ok(false);
        }
        let partial = path.with_extension("om.partial");
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&partial)?);
        for (f, w) in self.writers.iter_mut().enumerate() {
            let Some(w) = w.take() else { continue };
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            let fam = &LEDGER_FAMILIES[f];
            let mut header = String::new();
            // OpenMetrics names a counter family without `_total`; its samples carry it.
            let kind = match fam.kind {
                Kind::Counter(_) => "counter",
                Kind::Histogram(_) => "histogram",
            };
            push_header(&mut header, fam.name, fam.help, kind);
            out.write_all(header.as_bytes())?;
            let tmp = self.dir.join(format!(".family-{f}.tmp"));
            std::io::copy(&mut File::open(&tmp)?, &mut out)?;
            std::fs::remove_file(&tmp)?;
        }
        out.write_all(b"# EOF\n")?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)?;
        Ok(true)
    }
}

/// Progress on stderr: a bar on a terminal, a line every 10 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {percent}% {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            bar,
            total,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, done: u64, t_ms: i64, rows: u64, samples: u64) {
        let at = chrono::DateTime::from_timestamp_millis(t_ms)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        match &self.bar {
            Some(b) => {
                b.set_position(done);
                b.set_message(format!("{at}  rows {rows}  samples {samples}"));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                let pct = 100.0 * done as f64 / self.total.max(1) as f64;
                eprintln!("backfill: {pct:.1}% at {at}, rows {rows}, samples {samples}");
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

fn file_name(start_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(start_ms)
        .map(|d| d.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| start_ms.to_string());
    format!("litellm-{t}.om")
}

/// Rows per read window we aim for; windows halve above twice this and double below half.
const TARGET_ROWS: usize = 20_000;

/// Runs the backfill: reads the history, writes the files, returns what was written.
/// The command that turns the written files into TSDB blocks, as the README gives it: one
/// `promtool` run per file (a UTC day), each into one block (`--max-block-duration=24h`;
/// without it promtool cuts a day into 12 two-hour blocks).
pub fn promtool_command(out: &std::path::Path) -> String {
    format!(
        "mkdir -p BLOCKS_DIR && for f in {}/*.om; do {PROMTOOL_ONE_FILE} \"$f\" BLOCKS_DIR; done",
        out.display()
    )
}

/// The per-file step of `promtool_command`; the README's loop runs the same (a unit test holds it).
const PROMTOOL_ONE_FILE: &str =
    "promtool tsdb create-blocks-from openmetrics --max-block-duration=24h";

/// Counts the rows before `from_ms` into `ledger`, in hour chunks (each read well inside
/// `statement_timeout` on busy days); returns how many.
async fn count_before(
    client: &mut deadpool_postgres::Object,
    p: &read::Projection,
    ledger: &mut Ledger,
    from_ms: i64,
) -> anyhow::Result<u64> {
    let tx = db::read_tx(client).await?;
    let oldest = read::oldest_start(&tx, p).await?;
    tx.commit().await?;
    let Some(oldest) = oldest.filter(|old| *old < from_ms) else {
        return Ok(0);
    };
    let mut rows = 0;
    let mut lo: Option<i64> = None;
    let mut hi = (oldest + HOUR_MS).min(from_ms);
    loop {
        let tx = db::read_tx(client).await?;
        rows += read::each_row(&tx, p, lo, Some(hi), 0, 0, |r| {
            ledger.apply_row(r, false, &p.thresholds);
        })
        .await?;
        tx.commit().await?;
        if hi >= from_ms {
            break;
        }
        lo = Some(hi);
        hi = (hi + HOUR_MS).min(from_ms);
    }
    info!(rows, "Counted the rows before --from.");
    Ok(rows)
}

pub async fn run(cfg: &Config, o: &Options) -> anyhow::Result<Summary> {
    o.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("cannot create {}", o.out.display()))?;
    let pool = db::pool(&cfg.target, &cfg.pool);
    let mut client = pool.get().await.context("cannot connect")?;
    let schema = Schema::detect(&client).await.context("schema detection")?;
    if !schema.has_table("LiteLLM_SpendLogs") {
        bail!("LiteLLM_SpendLogs is missing (not a LiteLLM database?)");
    }
    let p = cfg.projection(&schema);
    // Organization aliases label the series as in the live exporter, which uses today's aliases.
    let ents = entities::read(&mut client, &schema, &cfg.entities, &cfg.selection).await?;
    let sel = &cfg.selection;

    let mut ledger = Ledger::default();
    let mut renderer = LedgerRenderer::default();
    let mut series = Series::new(sel, &o.labels, &o.out, &cfg.thresholds);
    let mut summary = Summary::default();

    // Everything before the first step counts in its first value, as it would live.
    summary.rows += count_before(&mut client, &p, &mut ledger, o.from_ms).await?;
    let mut touched: Vec<u32> = (0..ledger.classes().len() as u32).collect();

    let step = o.step_ms;
    let (first, last) = o.steps()?;
    let n_steps = ((last - first) / step + 1) as u64;
    let mut progress = Progress::new(n_steps);

    // Rows with startTime in [read_lo, t + 1 ms) are read before step t is written.
    let mut read_lo = o.from_ms;
    let mut window_steps: i64 = (HOUR_MS / step).max(1);
    let mut k: u64 = 0;
    let mut t = first;
    let mut file_start = t.div_euclid(o.file_ms) * o.file_ms;
    while t <= last {
        let file_end = file_start + o.file_ms;
        let w_last = (t + (window_steps - 1) * step).min(last).min(file_end - 1);
        let w_last = w_last - (w_last - t).rem_euclid(step);
        let hi = w_last + 1;
        let tx = db::read_tx(&mut client).await?;
        let mut rows = read::rows(&tx, &p, Some(read_lo), Some(hi), 0, 0).await?;
        tx.commit().await?;
        read_lo = hi;
        let n_rows = rows.len();
        rows.sort_by_key(|r| r.start_ms);
        let mut rows = rows.into_iter().peekable();
        while t <= w_last {
            while let Some(row) = rows.next_if(|r| r.start_ms <= t || t == w_last) {
                let c = ledger
                    .class_index(&row.key)
                    .unwrap_or(ledger.classes().len() as u32);
                ledger.apply_row(row, false, &p.thresholds);
                touched.push(c);
                summary.rows += 1;
            }
            touched.sort_unstable();
            touched.dedup();
            renderer.map_classes(&ledger, &ents.org_aliases, sel);
            series.absorb(&ledger, &renderer, &touched);
            touched.clear();
            series.emit(k, t, o.heartbeat_ms, &renderer, sel)?;
            k += 1;
            t += step;
        }
        progress.update(k, w_last, summary.rows, series.samples);
        if t >= file_end || t > last {
            let path = o.out.join(file_name(file_start));
            if series.finish_file(&path)? {
                summary.files.push(path);
            }
            file_start = file_end;
        }
        if n_rows > 2 * TARGET_ROWS {
            window_steps = (window_steps / 2).max(1);
        } else if n_rows < TARGET_ROWS / 2 {
            window_steps = (window_steps * 2).min(DAY_MS / step).max(1);
        }
    }
    progress.finish();
    summary.samples = series.samples;
    summary.classes = ledger.classes().len();
    summary.steps = k;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::class::ClassKey;
    use crate::ledger::values::RowValues;
    use crate::ledger::RawRow;

    /// What `backfill` prints as the next step is what the README tells operators to run: the
    /// same promtool invocation, with one block per day.
    #[test]
    fn the_printed_promtool_command_is_the_readmes() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let line = format!("{PROMTOOL_ONE_FILE} \"$f\" /tmp/litellm-blocks");
        assert!(
            readme.contains(&line),
            "the README's backfill loop no longer runs `{line}`"
        );
        let printed = promtool_command(std::path::Path::new("/tmp/litellm-backfill"));
        assert!(printed.contains("for f in /tmp/litellm-backfill/*.om; do "));
        assert!(printed.contains(&format!("{PROMTOOL_ONE_FILE} \"$f\" BLOCKS_DIR")));
    }

    /// A deterministic mix of rows: teams, models, failures, cache hits, tokens, latencies.
    fn row(n: u64) -> RawRow {
        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
        let failed = h % 7 == 0;
        RawRow {
            request_id: format!("r{n}"),
            start_ms: n as i64 * 1000,
            xmin: 1,
            key: ClassKey {
                team_id: format!("team-{}", h % 9),
                team_alias: format!("Team \"{}\"", h % 9),
                model: format!("m{}", (h >> 4) % 4),
                api_key: format!("k{}", (h >> 8) % 13),
                failed,
                error_code: if failed { "429".into() } else { String::new() },
                cache_hit: ["True", "False", ""][(h % 3) as usize].into(),
                ..Default::default()
            },
            values: RowValues {
                spend_pico: ((h % 1000) * 1_000_000) as i64,
                v: [
                    (h % 50) as i64,
                    3,
                    4,
                    (h % 5) as i64,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
                bad_numbers: 0,
                hist: [
                    Some((h % 3_000_000) as i64),
                    Some((h % 2_000_000) as i64),
                    None,
                    Some(1500),
                    Some((h % 90_000) as i64),
                ],
            },
        }
    }

    fn rendered(
        r: &mut LedgerRenderer,
        l: &Ledger,
        t: &Thresholds,
        sel: &Selection,
    ) -> Vec<String> {
        let (text, _) = r.render(l, &HashMap::new(), t, sel);
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// Counts `steps` (the rows of each step, a minute apart) into a ledger and keeps the backfill's
    /// series incrementally; after every step they must be exactly what the live renderer serves
    /// for the same ledger. Returns what was served at each step.
    fn served_alike(sel: &Selection, steps: Vec<Vec<RawRow>>) -> Vec<Vec<String>> {
        let t = Thresholds::new(&[0.005, 0.5, 1.0, 2.5], &[0.01, 0.1]);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::default();
        let mut mapping = LedgerRenderer::default();
        let mut full = LedgerRenderer::default();
        let mut series = Series::new(sel, &[], dir.path(), &t);
        let mut served = Vec::new();
        for (k, rows) in steps.into_iter().enumerate() {
            let k = k as u64;
            let mut touched = Vec::new();
            for r in rows {
                touched.push(
                    ledger
                        .class_index(&r.key)
                        .unwrap_or(ledger.classes().len() as u32),
                );
                ledger.apply_row(r, false, &t);
            }
            touched.sort_unstable();
            touched.dedup();
            mapping.map_classes(&ledger, &HashMap::new(), sel);
            series.absorb(&ledger, &mapping, &touched);
            series
                .emit(k, k as i64 * 60_000, 240_000, &mapping, sel)
                .expect("emit");
            let now = series.served(&mapping);
            assert_eq!(
                now,
                rendered(&mut full, &ledger, &t, sel),
                "step {k}, cap {:?}",
                sel.max_series
            );
            served.push(now);
        }
        served
    }

    /// At every step, the incrementally kept series are exactly what the live renderer serves for
    /// the same ledger, with and without the series cap (whose folding changes as series appear).
    #[test]
    fn incremental_series_equal_the_full_render() {
        for cap in [None, Some(5), Some(40)] {
            let sel = Selection {
                max_series: cap,
                ..Default::default()
            };
            let mut n = 0;
            let steps = (0..40u64)
                .map(|k| {
                    (0..(k % 5) * 3)
                        .map(|_| {
                            n += 1;
                            row(n - 1)
                        })
                        .collect()
                })
                .collect();
            let served = served_alike(&sel, steps);
            let folded = served
                .last()
                .expect("steps")
                .iter()
                .any(|l| l.contains("\"other\""));
            assert_eq!(folded, cap.is_some(), "the caps fold series");
        }
    }

    /// A team literally named "other" has the overflow series' labels where a family shows only
    /// the team: once the cap folds anything, the backfill folds it too, as the render does,
    /// instead of writing two series with the same labels.
    #[test]
    fn a_team_named_other_folds_as_in_the_render() {
        let mut sel = Selection {
            max_series: Some(2),
            ..Default::default()
        };
        for labels in sel.ledger.iter_mut().flatten() {
            *labels = vec![crate::catalogue::Label::Team];
        }
        // "other" sorts first: the cap of 2 keeps it and "p" until it joins the fold.
        let teams = ["other", "p", "q", "r", "other", "q"];
        let steps = teams
            .iter()
            .enumerate()
            .map(|(k, team)| {
                let mut r = row(k as u64);
                r.key.team_id = team.to_string();
                vec![r]
            })
            .collect();
        let requests = |team: &str, n: u64| {
            format!("litellm_proxy_total_requests_metric_total{{team=\"{team}\"}} {n}")
        };
        for (k, served) in served_alike(&sel, steps).iter().enumerate() {
            let shown: Vec<&String> = served
                .iter()
                .filter(|l| l.starts_with("litellm_proxy_total_requests_metric_total"))
                .collect();
            // From "q" on, "other", "q" and "r" count in the one series named "other".
            let want = match k {
                0 => vec![requests("other", 1)],
                1 => vec![requests("other", 1), requests("p", 1)],
                _ => vec![requests("other", k as u64), requests("p", 1)],
            };
            assert_eq!(shown, want.iter().collect::<Vec<_>>(), "step {k}");
        }
    }

    #[test]
    fn times_and_labels() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("2026-01-01", now), Ok(1_767_225_600_000));
        assert_eq!(
            parse_time("2026-01-01T01:00:00Z", now),
            Ok(1_767_225_600_000 + 3_600_000)
        );
        assert!(parse_time("yesterday", now).is_err());
        assert_eq!(
            parse_label("job=litellm"),
            Ok(("job".into(), "litellm".into()))
        );
        assert!(parse_label("1x=y").is_err());
        assert!(parse_label("novalue").is_err());
        assert_eq!(Options::default_heartbeat(60_000), 240_000);
        assert_eq!(Options::default_heartbeat(15_000), 240_000);
        assert_eq!(Options::default_heartbeat(7_000), 294_000);
    }
}
