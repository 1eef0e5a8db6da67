//! The refresh loop: on every tick it tails the spend log, re-reads the entity tables, renders the
//! whole exposition once, and publishes it for the HTTP side. It owns the ledger (no locks on the
//! counting path), retries the database with backoff, and saves the state file.

use std::collections::BTreeSet;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use deadpool_postgres::{Object, Pool};
use prometheus::IntCounter;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::db::give_way::GiveWay;
use crate::db::{self, DbError};
use crate::entities::{self, Snapshot};
use crate::ledger::read::{self, Projection};
use crate::ledger::tail::{Cursor, Progress, Tail};
use crate::ledger::Ledger;
use crate::render::LedgerRenderer;
use crate::schema::Schema;
use crate::selfmetrics::{ErrorKind, SelfMetrics};
use crate::sql;
use crate::state;

/// How often a read cancelled by a recovery conflict (on a hot-standby replica) is repeated at
/// once, before the refresh counts as failed and backs off. A cancelled read changed nothing, so
/// repeating it cannot count anything twice.
const CONFLICT_RETRIES: u32 = 3;

/// The time of the last sign of life of a refresh step: its start and every completed catch-up
/// chunk. The client-side timeout counts from it, so that a long catch-up made of many bounded
/// chunks is never cut, while a step that hears nothing from the server is.
#[derive(Clone)]
struct Heartbeat(Arc<Mutex<Instant>>);

impl Heartbeat {
    fn new() -> Self {
        Heartbeat(Arc::new(Mutex::new(Instant::now())))
    }

    fn beat(&self) {
        if let Ok(mut t) = self.0.lock() {
            *t = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.0.lock().map(|t| *t).unwrap_or_else(|_| Instant::now())
    }
}

/// Runs one refresh step with a client-side timeout of `limit` without a heartbeat. The server
/// enforces `statement_timeout` only while it runs: a frozen server (or a network that drops
/// packets silently) would leave a query waiting forever. On timeout the step's future is
/// dropped, and with it its [`Checkout`], which then closes the connection.
async fn bounded<T>(
    limit: Duration,
    heartbeat: &Heartbeat,
    step: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    heartbeat.beat();
    tokio::pin!(step);
    loop {
        let deadline = heartbeat.last() + limit;
        tokio::select! {
            r = &mut step => return r,
            _ = tokio::time::sleep_until(deadline.into()) => {
                if heartbeat.last() + limit <= Instant::now() {
                    return Err(DbError::Timeout(limit));
                }
            }
        }
    }
}

/// A pooled connection for one refresh step. It goes back to the pool only through
/// [`Checkout::release`], called when the step finished (with or without a server error: the
/// pool's recycling check drops connections the server closed). If the step is abandoned instead
/// (client-side timeout), the connection may still wait for an answer from a frozen server; it
/// is detached from the pool and closed, so the next step gets a fresh one and nothing piles up.
struct Checkout {
    obj: Option<Object>,
    discarded: IntCounter,
}

impl Checkout {
    fn release(mut self) {
        drop(self.obj.take());
    }
}

impl std::ops::Deref for Checkout {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.obj.as_ref().expect("present until released")
    }
}

impl std::ops::DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut Object {
        self.obj.as_mut().expect("present until released")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            // Dropping the detached client aborts its connection task, which closes the socket.
            drop(Object::take(obj));
            self.discarded.inc();
        }
    }
}

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
    caught_up: AtomicBool,
    /// The database answered the last refresh (a missing LiteLLM schema included: it answers).
    db_up: AtomicBool,
    /// Set after a publish: both facts above hold for what `/metrics` serves.
    ready: AtomicBool,
    /// The catch-up's progress while it runs, for the readiness message.
    catch_up: Mutex<Option<CatchUpStatus>>,
    /// The database answers but has no LiteLLM spend log: what to tell the operator.
    schema_problem: Mutex<Option<String>>,
    /// Series in the published exposition (ledger and entity families), for the landing page.
    series: AtomicU64,
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

    fn publish(&self, parts: Vec<Bytes>) {
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
    fn database_answers(&self) {
        self.db_up.store(true, Ordering::Relaxed);
        self.selfm.database_up.set(1);
    }

    /// The catch-up read one more chunk: the database answers, the data moves on.
    fn catch_up_progress(&self, status: CatchUpStatus) {
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

    fn catch_up_done(&self) {
        self.selfm.catching_up.set(0);
        self.selfm.catch_up_progress.set(1.0);
        self.selfm.catch_up_remaining.set(0.0);
        if let Ok(mut s) = self.catch_up.lock() {
            *s = None;
        }
        self.caught_up.store(true, Ordering::Relaxed);
    }

    /// The spend-log table is missing (None: found).
    fn set_schema_problem(&self, problem: Option<String>) {
        self.selfm.schema_up.set(i64::from(problem.is_none()));
        if let Ok(mut p) = self.schema_problem.lock() {
            *p = problem;
        }
    }

    fn set_ready_state(&self) {
        let ready = self.db_up.load(Ordering::Relaxed) && self.caught_up.load(Ordering::Relaxed);
        self.ready.store(ready, Ordering::Relaxed);
        self.selfm.ready.set(i64::from(ready));
        self.selfm
            .database_up
            .set(i64::from(self.db_up.load(Ordering::Relaxed)));
    }
}

/// Returns the heap's free pages to the system. A render (and before the first one, the
/// catch-up) frees as much as it keeps, in every thread's arena; glibc returns only the top of
/// each heap by itself, and the rest stayed resident: measured 289 MB resident for a 1M-row
/// benchmark ledger whose live heap was about 235 MB.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's resident memory (Linux: /proc/self/statm's second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Settings that change how rows map to label classes; a state file written under other ones is
/// not reused.
pub fn fingerprint(cfg: &Config) -> String {
    serde_json::json!({
        "identity": cfg.identity,
        "buckets": cfg.thresholds.bounds_s,
        "stream": cfg.stream_label,
        "extras": cfg.extras,
        // Classes merge the dimensions no exported family uses.
        "dims": cfg.selection.dims(),
    })
    .to_string()
}

/// A render of the ledger families and the ledger generation it shows (the renderer keeps the
/// organization aliases it used).
struct Rendered {
    generation: u64,
    parts: Vec<Bytes>,
    counts: crate::render::FamilyCounts,
}

pub struct Refresher {
    cfg: Config,
    pool: Pool,
    shared: Arc<Shared>,
    ledger: Ledger,
    tail: Tail,
    renderer: LedgerRenderer,
    /// The last render and what it was made from, reused while neither has changed.
    rendered: Option<Rendered>,
    /// The memory guard's fold level last reported: a higher one is warned about once.
    fold_level_seen: u32,
    /// Whether the remembered rows were last seen outgrowing their share of the budget (warned
    /// once each time they do).
    rows_over_budget: bool,
    schema: Option<Schema>,
    projection: Option<Projection>,
    /// Watches the spend-log reads from a second session of the pool (`db::give_way`).
    give_way: GiveWay,
    entities: Snapshot,
    fingerprint: String,
    /// Which spend log a loaded state file was written for, until it was checked against the
    /// database it is read from (None: no file loaded, or checked).
    saved_database: Option<state::SpendLog>,
    /// Which spend log this process reads (`state::database_identity`), what saves record; None
    /// until known (nothing to save before: the ledger is the loaded one) and again after a new
    /// database URL, until the next connection tells.
    db_identity: Option<state::SpendLog>,
    last_save: Option<Instant>,
    /// How long the last save took: saves are spaced to at least 20 times that, so that writing
    /// a large ledger (a ~1 GB file for 700k label classes) stays a small share of the time.
    last_save_took: Duration,
    last_progress_log: Instant,
    heartbeat: Heartbeat,
    /// Turns true on shutdown: a catch-up stops after its current chunk, so that the final state
    /// save keeps its progress instead of the process outliving `--web.drain-timeout`.
    stop: tokio::sync::watch::Receiver<bool>,
    /// Tables seen in this database since start. One that disappears later is taken for a
    /// migration in progress: an error, with the last values kept, rather than a schema change.
    known_tables: BTreeSet<&'static str>,
    /// Known tables missing at the last detection; the schema is detected again every refresh
    /// until they are back.
    vanished: Vec<&'static str>,
    /// LiteLLM's stored settings (`LiteLLM_Config`), read after connecting and on SIGHUP.
    db_settings: crate::config::db_settings::DbSettings,
}

impl Refresher {
    pub fn new(cfg: Config, shared: Arc<Shared>) -> Self {
        let pool = db::pool(&cfg.target, &cfg.pool);
        let fingerprint = fingerprint(&cfg);
        let (ledger, cursor, saved_database) = match &cfg.state_file {
            None => (Ledger::default(), Cursor::default(), None),
            Some(path) => match state::load(path, &fingerprint) {
                Ok(Some((l, c, database))) => {
                    info!(path = %path.display(), classes = l.classes().len(), "Loaded state file; resuming the counters.");
                    (l, c, Some(state::SpendLog::from_saved(&database)))
                }
                Ok(None) => (Ledger::default(), Cursor::default(), None),
                Err(e) => {
                    shared.selfm.error(ErrorKind::State);
                    warn!(error = %e, "Cannot use the state file; rebuilding from the database.");
                    (Ledger::default(), Cursor::default(), None)
                }
            },
        };
        let mut ledger = ledger;
        ledger.set_fold(cfg.fold_rule());
        if let Some(b) = &cfg.memory_budget {
            info!(
                budget = %crate::budget::human(b.bytes),
                from = %b.source,
                classes_share = %crate::budget::human(b.classes_bytes()),
                "Memory guard: label combinations beyond the budget will fold into \"other\" series."
            );
            shared.selfm.memory_budget.set(b.bytes as i64);
        }
        let give_way = GiveWay::new(pool.clone(), shared.selfm.gave_way.clone());
        Refresher {
            give_way,
            tail: Tail::new(cfg.tail.clone(), cursor),
            cfg,
            pool,
            shared,
            ledger,
            renderer: LedgerRenderer::default(),
            fold_level_seen: 0,
            rows_over_budget: false,
            rendered: None,
            schema: None,
            projection: None,
            entities: Snapshot::default(),
            fingerprint,
            saved_database,
            db_identity: None,
            last_save: None,
            last_save_took: Duration::ZERO,
            last_progress_log: Instant::now(),
            heartbeat: Heartbeat::new(),
            stop: tokio::sync::watch::channel(false).1,
            known_tables: BTreeSet::new(),
            vanished: Vec::new(),
            db_settings: Default::default(),
        }
    }

    /// The client-side bound of a refresh step without progress: more than the pool's own
    /// timeouts plus two statements, so that it only fires when the server does not answer.
    fn step_timeout(&self) -> Duration {
        2 * self.cfg.pool.statement_timeout + self.cfg.pool.connect_timeout
    }

    async fn checkout(&self) -> Result<Checkout, DbError> {
        Ok(Checkout {
            obj: Some(self.pool.get().await?),
            discarded: self.shared.selfm.connections_discarded.clone(),
        })
    }

    /// Counts a recovery conflict that is about to be retried; false when retries are used up
    /// or the error is something else.
    fn retry_conflict(&self, e: &DbError, attempt: &mut u32, step: &str) -> bool {
        if e.kind() != ErrorKind::Conflict || *attempt >= CONFLICT_RETRIES {
            return false;
        }
        *attempt += 1;
        self.shared.selfm.error(ErrorKind::Conflict);
        info!(step, attempt = *attempt, error = %e, "Read cancelled by a recovery conflict on the replica; repeating it.");
        true
    }

    /// Runs until `shutdown` turns true, then saves the state file once more.
    pub async fn run(
        mut self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        mut reload: crate::Reload,
    ) {
        self.stop = shutdown.clone();
        let mut backoff = Duration::from_millis(500);
        let mut reload_open = true;
        // Failed refreshes in a row, and since when: the recovery is logged once, with both.
        let mut failing: Option<(Instant, u32)> = None;
        info!(database = %self.cfg.target.display, tls = %self.cfg.target.tls.summary, poll_interval = ?self.cfg.poll_interval, "Starting refresh loop.");
        loop {
            let started = Instant::now();
            let ok = self.cycle().await;
            failing = match (ok, failing) {
                (true, Some((since, n))) => {
                    info!(
                        failed_refreshes = n,
                        seconds = since.elapsed().as_secs(),
                        "Refreshes succeed again after the failures logged before."
                    );
                    None
                }
                (true, None) => None,
                (false, f) => Some(f.map_or((started, 1), |(since, n)| (since, n + 1))),
            };
            self.publish();
            // Ready only once what this refresh read is published.
            self.shared.set_ready_state();
            if *shutdown.borrow() {
                break;
            }
            self.maybe_save(false);
            let wait = if ok {
                backoff = Duration::from_millis(500);
                self.cfg.poll_interval.saturating_sub(started.elapsed())
            } else {
                backoff = (backoff * 2).min(Duration::from_secs(30).max(self.cfg.poll_interval));
                backoff
            };
            let reloaded = async {
                if reload_open {
                    reload.changed().await.is_ok()
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                ok = reloaded => {
                    // A closed channel means no more reloads, not one more.
                    reload_open = ok;
                    if ok {
                        self.reload_url();
                        self.db_settings.reload();
                    }
                }
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.maybe_save(true);
        info!("Refresh loop stopped.");
    }

    /// SIGHUP: re-reads `--db-url-file`. A changed URL gets a new pool (the old sessions close)
    /// and the next refresh runs at once; the ledger and the reading position carry on, so no
    /// counter restarts. An unreadable or invalid file keeps the current URL.
    fn reload_url(&mut self) {
        let Some(path) = self.cfg.db_url_file.clone() else {
            debug!("SIGHUP: the database URL was not read from a file; nothing to re-read.");
            return;
        };
        let target = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| db::parse_url(&text).map_err(|e| e.to_string()));
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                self.shared.selfm.error(ErrorKind::DbUrlFile);
                error!(file = %path.display(), error = %e, "SIGHUP: cannot use the database URL file; keeping the current database URL.");
                return;
            }
        };
        if target.url_digest == self.cfg.target.url_digest {
            info!(file = %path.display(), "SIGHUP: the database URL is unchanged.");
            return;
        }
        info!(database = %target.display, tls = %target.tls.summary, "SIGHUP: new database URL; reconnecting, counters continue.");
        self.pool.close();
        self.pool = db::pool(&target, &self.cfg.pool);
        self.give_way = GiveWay::new(self.pool.clone(), self.shared.selfm.gave_way.clone());
        self.cfg.target = target;
        // Another server may run another LiteLLM version, and saves name the database they
        // are read from once it answers.
        self.schema = None;
        self.db_identity = None;
    }

    /// One refresh. Returns false if the database could not be read (the last values stay).
    async fn cycle(&mut self) -> bool {
        let t0 = Instant::now();
        let limit = self.step_timeout();
        let heartbeat = self.heartbeat.clone();
        let mut attempt = 0;
        let ledger_result = loop {
            match bounded(limit, &heartbeat, self.refresh_ledger()).await {
                Err(e) if self.retry_conflict(&e, &mut attempt, "ledger") => continue,
                Err(DbError::SpendLogReplaced) if attempt < CONFLICT_RETRIES => {
                    // Not an error: the reads are planned again for the tables there are now.
                    attempt += 1;
                    info!("The spend log's tables changed (LiteLLM's partitioning script, or the legacy table dropped); planning the reads again.");
                    self.schema = None;
                    continue;
                }
                r => break r,
            }
        };
        // Known tables that vanished: detect again next time to see them come back.
        if !self.vanished.is_empty() {
            self.schema = None;
        }
        self.shared
            .selfm
            .refresh_duration
            .with_label_values(&["ledger"])
            .set(t0.elapsed().as_secs_f64());
        // The database answered, without LiteLLM's spend log: its own state (`schema_up`), not
        // an outage.
        let spend_log_missing = matches!(
            ledger_result,
            Err(DbError::MissingTable("LiteLLM_SpendLogs"))
        );
        let ledger_ok = match ledger_result {
            Ok(()) => true,
            Err(e) => {
                self.shared.selfm.error(e.kind());
                warn!(kind = e.kind().label(), error = %e, "Spend-log refresh failed; serving the last values.");
                // A failure may mean a reconnect or a migration: detect the schema again.
                self.schema = None;
                false
            }
        };
        let t1 = Instant::now();
        let entities_ok = if ledger_ok {
            let mut attempt = 0;
            let result = loop {
                match bounded(limit, &heartbeat, self.refresh_entities()).await {
                    Err(e) if self.retry_conflict(&e, &mut attempt, "entities") => continue,
                    r => break r,
                }
            };
            match result {
                Ok(()) => true,
                Err(e) => {
                    // A table gone or renamed is a schema problem; anything else stays under
                    // "entities" as before.
                    let kind = if e.kind() == ErrorKind::Schema {
                        self.schema = None;
                        ErrorKind::Schema
                    } else {
                        ErrorKind::Entities
                    };
                    self.shared.selfm.error(kind);
                    warn!(kind = e.kind().label(), error = %e, "Entity refresh failed; serving the last budget gauges.");
                    false
                }
            }
        } else {
            false
        };
        self.shared
            .selfm
            .refresh_duration
            .with_label_values(&["entities"])
            .set(t1.elapsed().as_secs_f64());
        let ok = ledger_ok && entities_ok;
        self.shared
            .selfm
            .pool_connections
            .set(self.pool.status().size as i64);
        self.shared
            .db_up
            .store(ok || spend_log_missing, Ordering::Relaxed);
        if ok {
            self.shared.selfm.last_success.set(unix_now());
        }
        ok
    }

    /// An empty ledger under the configured memory guard.
    fn fresh_ledger(&self) -> Ledger {
        let mut l = Ledger::default();
        l.set_fold(self.cfg.fold_rule());
        l
    }

    /// The memory guard's self-metrics, and a warning each time it folds further.
    fn report_fold(&mut self) {
        let sm = &self.shared.selfm;
        let (level, cost) = self.ledger.fold_state();
        sm.fold_level.set(i64::from(level));
        sm.classes_estimate.set(cost as i64);
        SelfMetrics::catch_up_counter(&sm.memory_folded_classes, self.ledger.stats.folded_classes);
        SelfMetrics::catch_up_counter(&sm.memory_folded_rows, self.ledger.overflow_rows());
        if let Some(b) = &self.cfg.memory_budget {
            let rows = self.ledger.remembered_rows() as u64;
            let over = !b.rows_fit(rows);
            if over && !self.rows_over_budget {
                warn!(
                    remembered_rows = rows,
                    about = %crate::budget::human(rows * crate::budget::ROW_BYTES),
                    share = %crate::budget::human(b.rows_bytes()),
                    "Memory guard: the rows of the lateness window (remembered to count their rewrites exactly) need more than the budget leaves them, and cannot fold; lower --ledger.lateness or raise --memory.budget."
                );
            }
            self.rows_over_budget = over;
        }
        if level > self.fold_level_seen {
            self.fold_level_seen = level;
            let budget = self
                .cfg
                .memory_budget
                .as_ref()
                .map(|b| crate::budget::human(b.bytes))
                .unwrap_or_default();
            warn!(
                budget = %budget,
                fold_level = level,
                classes_kept = self.ledger.classes().len(),
                classes_folded = self.ledger.stats.folded_classes,
                "Memory guard: the label combinations seen need more than the memory budget; about 1 in 2^fold_level of them keep series of their own (chosen by a hash of their labels, the same in every exporter), the others now count in series whose labels read \"other\". Totals stay exact. Narrow the labels (prometheus_metrics_config) or raise --memory.budget to keep more."
            );
        }
    }

    /// What `/-/ready` says when the database answers without LiteLLM's spend log.
    fn missing_spend_log_message(&self) -> String {
        let db = &self.cfg.target.display;
        if self.vanished.contains(&"LiteLLM_SpendLogs") {
            format!("LiteLLM's spend-log table \"LiteLLM_SpendLogs\" disappeared from {db} (a migration in progress?); the last values are served until it is back")
        } else {
            format!("the database {db} answers but has no LiteLLM spend-log table \"LiteLLM_SpendLogs\": the wrong database or schema (the URL's ?schema= or the role's search_path), or LiteLLM's migrations have not run yet")
        }
    }

    /// One ledger step on one pooled connection; the connection goes back to the pool only if
    /// the step was not abandoned (see [`Checkout`]).
    async fn refresh_ledger(&mut self) -> Result<(), DbError> {
        let mut client = self.checkout().await?;
        let r = self.ledger_step(&mut client).await;
        client.release();
        r
    }

    /// The replica's state (a primary reports "not in recovery"), read every refresh so that
    /// stale data on a lagging replica can be told from quiet traffic.
    async fn read_replica_state(&self, client: &Object) -> Result<(), DbError> {
        let r = client.query_one(sql::REPLICA, &[]).await?;
        let in_recovery: bool = r.try_get("in_recovery")?;
        let gap: Option<f64> = r.try_get("received_minus_replayed_bytes")?;
        let last: Option<f64> = r.try_get("last_replay_unix")?;
        let paused: Option<bool> = r.try_get("replay_paused")?;
        let receiver: Option<bool> = r.try_get("receiver_up")?;
        let now: f64 = r.try_get("now_unix")?;
        let sm = &self.shared.selfm;
        let gap = gap.unwrap_or(0.0).max(0.0);
        sm.in_recovery.set(i64::from(in_recovery));
        sm.replay_lag_bytes.set(gap);
        sm.last_replay.set(last.unwrap_or(0.0));
        // Everything received is replayed: the replica is as fresh as what it was sent, however
        // old its last commit is (a quiet primary).
        let lag = match last {
            Some(t) if gap > 0.0 => (now - t).max(0.0),
            _ => 0.0,
        };
        sm.replay_lag_seconds.set(lag);
        sm.replay_paused.set(i64::from(paused.unwrap_or(false)));
        sm.wal_receiver_up
            .set(i64::from(receiver.unwrap_or(!in_recovery)));
        Ok(())
    }

    async fn ledger_step(&mut self, client: &mut Object) -> Result<(), DbError> {
        self.read_replica_state(client).await?;
        self.shared.database_answers();
        self.db_settings.refresh(client, &mut self.cfg).await?;
        if self.schema.is_none() {
            let schema = Schema::detect(client).await?;
            for (feature, present) in schema.features() {
                self.shared
                    .selfm
                    .schema_feature
                    .with_label_values(&[&feature])
                    .set(i64::from(present));
            }
            let missing = schema.missing_tables();
            self.vanished = missing
                .iter()
                .copied()
                .filter(|t| self.known_tables.contains(t))
                .collect();
            self.known_tables.extend(
                crate::schema::TABLES
                    .iter()
                    .copied()
                    .filter(|t| schema.has_table(t)),
            );
            for t in &missing {
                if self.vanished.contains(t) {
                    warn!(
                        table = t,
                        "LiteLLM table disappeared (renamed or dropped by a migration?); serving its last values until it is back."
                    );
                } else {
                    warn!(
                        table = t,
                        "LiteLLM table not found; the metrics that need it are off."
                    );
                }
            }
            if missing.contains(&"LiteLLM_SpendLogs") && self.cfg.sources.ledger {
                self.shared
                    .set_schema_problem(Some(self.missing_spend_log_message()));
                return Err(DbError::MissingTable("LiteLLM_SpendLogs"));
            }
            self.shared.set_schema_problem(None);
            self.projection = Some(self.cfg.projection(&schema));
            self.schema = Some(schema);
        }
        if !self.cfg.sources.ledger {
            // Entities only: "caught up" as soon as the database answers.
            self.shared.catch_up_done();
            return Ok(());
        }
        let projection = self.projection.clone().expect("set with the schema");

        if self.cfg.state_file.is_some() && self.db_identity.is_none() {
            self.db_identity =
                Some(state::database_identity(client, &self.cfg.target.display).await?);
        }
        // A loaded state file is checked once, against the database it is read from; after a new
        // URL on SIGHUP the counters carry on, and the saves just record where they are read from.
        if let (Some(saved), Some(identity)) = (&self.saved_database, &self.db_identity) {
            if !saved.continues_on(identity, &self.cfg.target.display) {
                warn!("State file was written for another database (its cluster, database or LiteLLM schema differ); rebuilding from the database.");
                self.ledger = self.fresh_ledger();
                self.tail.cursor = Cursor::default();
            } else {
                // A state file from before a database restore would name transactions that
                // never happened in this database; its positions cannot be trusted then.
                let tx = db::read_tx(client).await?;
                let snap = read::snapshot(&tx).await?;
                tx.commit().await?;
                if self.tail.cursor.late_since > snap.xmax {
                    warn!("State file is ahead of the database (restored or replaced?); rebuilding from the database.");
                    self.ledger = self.fresh_ledger();
                    self.tail.cursor = Cursor::default();
                }
            }
            self.saved_database = None;
        }

        if !self.tail.cursor.caught_up() {
            // Taken again at every (re)start of the catch-up, from where its cursor stands.
            let estimate = self.tail.catch_up_estimate(client, &projection).await?;
            let shared = self.shared.clone();
            let last_log = &mut self.last_progress_log;
            let heartbeat = self.heartbeat.clone();
            let stop = self.stop.clone();
            let started = Instant::now();
            info!(
                rows_estimate = estimate.map(|e| e.round() as u64),
                "Catching up with the spend log."
            );
            self.shared.selfm.catching_up.set(1);
            let done = self
                .tail
                .catch_up(client, &self.give_way, &mut self.ledger, &projection, |p| {
                    heartbeat.beat();
                    let status = CatchUpStatus::new(&p, estimate, started.elapsed());
                    shared.catch_up_progress(status);
                    if last_log.elapsed() >= Duration::from_secs(5) {
                        *last_log = Instant::now();
                        info!(
                            progress = format!("{:.1}%", status.ratio * 100.0),
                            rows = p.rows,
                            rows_estimate = status.estimate,
                            seconds_left = status.left.map(|d| d.as_secs()),
                            "Catch-up progress."
                        );
                    }
                    if *stop.borrow() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .await?;
            if !done {
                info!(
                    rows = self.ledger.stats.rows_ingested,
                    "Catch-up stopped for the shutdown; the state file keeps its position."
                );
                return Ok(());
            }
            self.shared.catch_up_done();
            info!(
                rows = self.ledger.stats.rows_ingested,
                classes = self.ledger.classes().len(),
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "Catch-up complete."
            );
        } else {
            self.shared.caught_up.store(true, Ordering::Relaxed);
            let r = self
                .tail
                .poll(client, &self.give_way, &mut self.ledger, &projection)
                .await?;
            self.shared.selfm.poll_rows_read.set(r.rows_read as i64);
            debug!(
                read = r.rows_read,
                new = r.new_rows,
                grown = r.grown_rows,
                window_s = r.window_ms / 1000,
                "Polled the spend log."
            );
        }
        Ok(())
    }

    async fn refresh_entities(&mut self) -> Result<(), DbError> {
        let mut client = self.checkout().await?;
        let r = self.entities_step(&mut client).await;
        client.release();
        r
    }

    async fn entities_step(&mut self, client: &mut Object) -> Result<(), DbError> {
        // A table that vanished keeps its last gauges (the whole last snapshot stays).
        if let Some(t) = self
            .vanished
            .iter()
            .copied()
            .find(|t| *t != "LiteLLM_SpendLogs")
        {
            return Err(DbError::MissingTable(t));
        }
        let schema = self.schema.clone().unwrap_or_default();
        self.entities =
            entities::read(client, &schema, &self.cfg.entities, &self.cfg.selection).await?;
        SelfMetrics::catch_up_counter(
            &self.shared.selfm.bad_numbers,
            self.ledger.stats.bad_numbers + self.entities.bad_numbers,
        );
        Ok(())
    }

    fn publish(&mut self) {
        let sm = &self.shared.selfm;
        let stats = &self.ledger.stats;
        SelfMetrics::catch_up_counter(&sm.rows_ingested, stats.rows_ingested);
        SelfMetrics::catch_up_counter(&sm.corrections_ignored, stats.corrections_ignored);
        // During the catch-up the newest row counted is history: no lag to report yet.
        if let (true, Some(newest)) = (self.tail.cursor.caught_up(), stats.newest_start_ms) {
            sm.ingest_lag
                .set((unix_now() - newest as f64 / 1000.0).max(0.0));
        }
        sm.remembered_rows.set(self.ledger.remembered_rows() as i64);
        if let Some(rss) = resident_bytes() {
            sm.resident.set(rss as i64);
        }
        self.report_fold();
        let sm = &self.shared.selfm;
        // Until this process has caught up, its totals may lag the values a previous process
        // served (a state file is only saved every 30 s): serving them could look like a
        // counter reset, so the ledger families appear only once they are complete.
        let t0 = Instant::now();
        let unchanged = self.rendered.as_ref().is_some_and(|r| {
            r.generation == self.ledger.generation()
                && self.renderer.rendered_with(&self.entities.org_aliases)
        });
        let mut rendered_now = false;
        if !self.tail.cursor.caught_up() {
            self.rendered = None;
        } else if !unchanged {
            rendered_now = true;
            // Rendering a large ledger is CPU work of up to seconds; moving this worker thread
            // out of the async pool keeps scrapes answered meanwhile.
            let (parts, counts) = tokio::task::block_in_place(|| {
                self.renderer.render_parts(
                    &self.ledger,
                    &self.entities.org_aliases,
                    &self.cfg.thresholds,
                    &self.cfg.selection,
                )
            });
            sm.renders.inc();
            self.rendered = Some(Rendered {
                generation: self.ledger.generation(),
                parts: parts.into_iter().map(Bytes::from).collect(),
                counts,
            });
        }
        let (ledger_parts, counts): (&[Bytes], &[_]) = match &self.rendered {
            Some(r) => (&r.parts, &r.counts),
            None => (&[], &[]),
        };
        let parts: Vec<Bytes> = ledger_parts
            .iter()
            .cloned()
            .chain([self.entities.text.clone()])
            .collect();
        let mut series_total = 0u64;
        for c in counts.iter().chain(&self.entities.series) {
            series_total += c.series as u64;
            sm.series
                .with_label_values(&[c.family])
                .set(c.series as i64);
            if c.folded > 0 {
                sm.folded_series
                    .with_label_values(&[c.family])
                    .set(c.folded as i64);
                SelfMetrics::catch_up_counter(
                    &sm.folded_rows.with_label_values(&[c.family]),
                    c.folded_rows,
                );
            }
        }
        self.shared.series.store(series_total, Ordering::Relaxed);
        // Compressing (when scrapes ask for gzip) is CPU work like rendering, and so is trimming
        // the heap once the previous render's text is let go.
        tokio::task::block_in_place(|| {
            self.shared.publish(parts);
            if rendered_now {
                give_back_free_memory();
            }
        });
        sm.refresh_duration
            .with_label_values(&["render"])
            .set(t0.elapsed().as_secs_f64());
    }

    fn maybe_save(&mut self, force: bool) {
        let (Some(path), Some(identity)) = (&self.cfg.state_file, &self.db_identity) else {
            return;
        };
        let every = Duration::from_secs(30)
            .max(self.cfg.poll_interval)
            .max(self.last_save_took * 20);
        let due = self.last_save.is_none_or(|t| t.elapsed() >= every);
        if !(force || due) {
            return;
        }
        let started = Instant::now();
        // Serializing a large ledger is seconds of CPU: off the async workers, like a render.
        let saved = tokio::task::block_in_place(|| {
            state::save(
                path,
                &self.fingerprint,
                &identity.to_string(),
                &self.ledger,
                &self.tail.cursor,
            )
        });
        self.last_save_took = started.elapsed();
        debug!(
            seconds = self.last_save_took.as_secs_f64(),
            "Saved the state file."
        );
        match saved {
            Ok(()) => {
                self.last_save = Some(Instant::now());
                self.shared.selfm.state_saved.set(unix_now());
            }
            Err(e) => {
                self.shared.selfm.error(ErrorKind::State);
                warn!(error = %e, "Cannot write the state file.");
                self.last_save = Some(Instant::now());
            }
        }
    }
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
