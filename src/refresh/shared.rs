//! What the refresh loop shares with the HTTP side: the published exposition, the readiness
//! facts (`/-/ready`, the landing page) and the self-metrics, and the catch-up's progress as it
//! is told to the operator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::ledger::tail::Progress;
use crate::selfmetrics::SelfMetrics;

/// One published exposition: the text in parts (one per family, then the entities' families),
/// served one after the other, and its gzip prefix made on the first gzip scrape.
#[derive(Default)]
pub struct Published {
    pub plain: Vec<Bytes>,
    pub gzip: std::sync::OnceLock<crate::gzip::Prefix>,
}

/// What the start-up catch-up has done so far, for `/-/ready`, the landing page, the log and the
/// self-metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CatchUpStatus {
    /// Share done, in [0, 1): 1 only once the catch-up is complete (not kept here).
    pub ratio: f64,
    /// Rows read by this catch-up so far.
    pub rows: u64,
    /// How many rows this catch-up reads in all, from the planner's statistics; None when they
    /// are unknown (never analysed) or evidently stale (fewer than already read).
    pub estimate: Option<u64>,
    /// Time left at the pace so far; None before anything was read.
    pub left: Option<Duration>,
}

impl CatchUpStatus {
    /// From a catch-up's progress, `estimate` (the rows it reads in all, about) and the time it
    /// has run. The share follows the rows where the estimate is credible, else the share of the
    /// history's time span read; either stays below 1 until the catch-up says it is done.
    pub fn new(p: &Progress, estimate: Option<f64>, elapsed: Duration) -> Self {
        let estimate = estimate
            .map(f64::round)
            .filter(|e| e.is_finite() && *e >= 1.0 && *e >= p.rows as f64)
            .map(|e| e as u64);
        let by_time = match p.from_ms {
            Some(from) if p.end_ms > from => (p.done_ms - from) as f64 / (p.end_ms - from) as f64,
            _ => 0.0,
        };
        let ratio = match estimate {
            Some(e) => p.rows as f64 / e as f64,
            None => by_time,
        }
        .clamp(0.0, 0.999);
        let left = (ratio > 0.0)
            .then(|| elapsed.mul_f64((1.0 - ratio) / ratio))
            .filter(|d| *d < Duration::from_secs(365 * 86_400));
        CatchUpStatus {
            ratio,
            rows: p.rows,
            estimate,
            left,
        }
    }

    /// "catching up: 42.0% (1,234,567 rows read of about 2,900,000), about 37 s left".
    pub fn describe(&self) -> String {
        let rows = match self.estimate {
            Some(e) => format!(
                "{} rows read of about {}",
                group_digits(self.rows),
                group_digits(e)
            ),
            None => format!(
                "{} rows read; share of the history's time span",
                group_digits(self.rows)
            ),
        };
        let left = match self.left {
            Some(d) => format!(", about {} s left", d.as_secs().max(1)),
            None => String::new(),
        };
        format!("catching up: {:.1}% ({rows}){left}", self.ratio * 100.0)
    }
}

/// 1234567 -> "1,234,567".
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the HTTP side reads: the last rendered exposition and the readiness facts.
pub struct Shared {
    exposition: RwLock<Arc<Published>>,
    pub selfm: SelfMetrics,
    pub(super) caught_up: AtomicBool,
    /// The database answered the last refresh (a missing LiteLLM schema included: it answers).
    pub(super) db_up: AtomicBool,
    /// Set after a publish: both facts above hold for what `/metrics` serves.
    ready: AtomicBool,
    /// The catch-up's progress while it runs, for the readiness message.
    catch_up: Mutex<Option<CatchUpStatus>>,
    /// The database answers but has no LiteLLM spend log: what to tell the operator.
    schema_problem: Mutex<Option<String>>,
    /// Series in the published exposition (ledger and entity families), for the landing page.
    pub(super) series: AtomicU64,
    /// Set by the first gzip scrape: from then on each refresh compresses what it publishes, so
    /// that scrapes (Prometheus always asks for gzip) only send bytes.
    pub gzip_wanted: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            exposition: RwLock::new(Arc::new(Published::default())),
            selfm: SelfMetrics::new(),
            caught_up: AtomicBool::new(false),
            db_up: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            catch_up: Mutex::new(None),
            schema_problem: Mutex::new(None),
            series: AtomicU64::new(0),
            gzip_wanted: AtomicBool::new(false),
        }
    }
}

/// What the landing page shows of the exporter's state.
pub struct Status {
    /// None when ready; otherwise why not (`Shared::not_ready_reason`).
    pub not_ready: Option<String>,
    /// Unix time of the last refresh that read the database, 0 before the first.
    pub last_refresh: f64,
    pub series: u64,
    /// Bytes of the plain exposition (without the self-metrics).
    pub body_bytes: u64,
    /// Whether scrapes have asked for gzip (then each refresh compresses once).
    pub gzip: bool,
}

impl Shared {
    pub fn exposition(&self) -> Arc<Published> {
        self.exposition
            .read()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    pub(super) fn publish(&self, parts: Vec<Bytes>) {
        // The same text again (an idle proxy): keep what is published, and its gzip.
        let current = self.exposition();
        if current.plain.len() == parts.len()
            && current
                .plain
                .iter()
                .zip(&parts)
                .all(|(a, b)| (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b)
        {
            return;
        }
        let next = Arc::new(Published {
            plain: parts,
            gzip: std::sync::OnceLock::new(),
        });
        if self.gzip_wanted.load(Ordering::Relaxed) {
            next.gzip
                .get_or_init(|| crate::gzip::Prefix::new(&next.plain));
        }
        if let Ok(mut b) = self.exposition.write() {
            *b = next;
        }
    }

    /// None when ready; otherwise why not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.ready.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(problem) = self.schema_problem.lock().ok().and_then(|p| p.clone()) {
            return Some(problem);
        }
        if !self.db_up.load(Ordering::Relaxed) {
            return Some(
                "the database does not answer or the last refresh failed (see the log and litellm_exporter_errors_total)"
                    .into(),
            );
        }
        if !self.caught_up.load(Ordering::Relaxed) {
            let status = self.catch_up.lock().ok().and_then(|s| *s);
            return Some(match status {
                Some(s) => s.describe(),
                None => "catching up: starting to read the spend log".into(),
            });
        }
        Some("the first complete refresh is being rendered".into())
    }

    /// The landing page's facts.
    pub fn status(&self) -> Status {
        Status {
            not_ready: self.not_ready_reason(),
            last_refresh: self.selfm.last_success.get(),
            series: self.series.load(Ordering::Relaxed),
            body_bytes: self.exposition().plain.iter().map(|p| p.len() as u64).sum(),
            gzip: self.gzip_wanted.load(Ordering::Relaxed),
        }
    }

    /// The database answered: `database_up` is 1 from now, also while a long catch-up runs
    /// (before, the whole catch-up read as an outage, and the outage alert paged on every start).
    pub(super) fn database_answers(&self) {
        self.db_up.store(true, Ordering::Relaxed);
        self.selfm.database_up.set(1);
    }

    /// The catch-up read one more chunk: the database answers, the data moves on.
    pub(super) fn catch_up_progress(&self, status: CatchUpStatus) {
        self.database_answers();
        self.selfm.last_success.set(unix_now());
        self.selfm.catching_up.set(1);
        self.selfm.catch_up_progress.set(status.ratio);
        self.selfm
            .catch_up_remaining
            .set(status.left.map_or(-1.0, |d| d.as_secs_f64()));
        if let Ok(mut s) = self.catch_up.lock() {
            *s = Some(status);
        }
    }

    pub(super) fn catch_up_done(&self) {
        self.selfm.catching_up.set(0);
        self.selfm.catch_up_progress.set(1.0);
        self.selfm.catch_up_remaining.set(0.0);
        if let Ok(mut s) = self.catch_up.lock() {
            *s = None;
        }
        self.caught_up.store(true, Ordering::Relaxed);
    }

    /// The spend-log table is missing (None: found).
    pub(super) fn set_schema_problem(&self, problem: Option<String>) {
        self.selfm.schema_up.set(i64::from(problem.is_none()));
        if let Ok(mut p) = self.schema_problem.lock() {
            *p = problem;
        }
    }

    pub(super) fn set_ready_state(&self) {
        let ready = self.db_up.load(Ordering::Relaxed) && self.caught_up.load(Ordering::Relaxed);
        self.ready.store(ready, Ordering::Relaxed);
        self.selfm.ready.set(i64::from(ready));
        self.selfm
            .database_up
            .set(i64::from(self.db_up.load(Ordering::Relaxed)));
    }
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(rows: u64, done_ms: i64) -> Progress {
        Progress {
            done_ms,
            from_ms: Some(0),
            end_ms: 1000,
            rows,
        }
    }

    #[test]
    fn catch_up_status_follows_rows_of_a_credible_estimate() {
        let s = CatchUpStatus::new(
            &progress(1_234_567, 100),
            Some(2_469_134.2),
            Duration::from_secs(30),
        );
        assert_eq!(s.estimate, Some(2_469_134));
        assert!((s.ratio - 0.5).abs() < 1e-6, "{s:?}");
        assert_eq!(s.left.map(|d| d.as_secs()), Some(30));
        assert_eq!(
            s.describe(),
            "catching up: 50.0% (1,234,567 rows read of about 2,469,134), about 30 s left"
        );
    }

    #[test]
    fn catch_up_status_falls_back_to_the_time_span_without_a_credible_estimate() {
        // Fewer rows estimated than already read (statistics older than a bulk load), or none.
        for estimate in [Some(10.0), None, Some(f64::NAN), Some(0.0)] {
            let s = CatchUpStatus::new(&progress(500, 250), estimate, Duration::from_secs(10));
            assert_eq!(s.estimate, None, "{estimate:?}");
            assert!((s.ratio - 0.25).abs() < 1e-9);
            assert_eq!(s.left, Some(Duration::from_secs(30)));
            assert_eq!(
                s.describe(),
                "catching up: 25.0% (500 rows read; share of the history's time span), about 30 s left"
            );
        }
    }

    #[test]
    fn catch_up_status_never_says_done_nor_guesses_before_reading() {
        let s = CatchUpStatus::new(&progress(100, 1000), Some(100.0), Duration::from_secs(5));
        assert!(s.ratio < 1.0 && s.describe().starts_with("catching up: 99.9%"));
        let s = CatchUpStatus::new(&progress(0, 0), Some(100.0), Duration::from_secs(5));
        assert_eq!(s.ratio, 0.0);
        assert_eq!(s.left, None);
        assert_eq!(s.describe(), "catching up: 0.0% (0 rows read of about 100)");
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(12_345_678), "12,345,678");
    }
}
