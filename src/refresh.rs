//! The refresh loop: a small scheduler over named sources. On every tick it runs each source in
//! turn (`Source`: the database check, the spend-log ledger, the entity tables), renders the
//! exposition from what they hold, and publishes it for the HTTP side. Each source reads in its
//! own transactions and keeps its last values when it fails; the scheduler alone bounds a read
//! in time, checks a connection out for it, repeats it after a recovery conflict, reports it
//! (`litellm_exporter_source_up`, `..._source_duration_seconds`, `errors_total{kind}`), and backs
//! off when a refresh failed. A failing source does not keep the others from reading, except
//! the database check: when the database does not answer, the others are not attempted.

mod entities;
mod ledger;
mod replica;
mod shared;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::Object;
use prometheus::IntCounter;
use tracing::{info, warn};

use crate::config::Config;
use crate::db::database::{Database, UrlReload};
use crate::db::DbError;
use crate::selfmetrics::{ErrorKind, SelfMetrics};

use entities::EntitySource;
use ledger::LedgerSource;
use replica::ReplicaSource;
pub(crate) use shared::unix_now;
pub use shared::{CatchUpStatus, Published, Shared, Status};

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

/// The named parts of a refresh, in the order they run. Each reads in transactions of its own,
/// keeps its last values when it fails, and is reported under its name (the `source` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The database check: does it answer, is it a replica, LiteLLM's stored settings.
    Replica,
    /// The spend log, into the ledger's counters and histograms.
    Ledger,
    /// The entity tables, into the budget, limit and count gauges.
    Entities,
}

impl Source {
    /// The `source` label value.
    fn name(self) -> &'static str {
        match self {
            Source::Replica => "replica",
            Source::Ledger => "ledger",
            Source::Entities => "entities",
        }
    }

    /// The `errors_total` kind of a failed read. An entity table that cannot be read counts as
    /// "entities" (as before sources existed), unless it is gone ("schema").
    fn error_kind(self, e: &DbError) -> ErrorKind {
        match (self, e.kind()) {
            (Source::Entities, k) if k != ErrorKind::Schema => ErrorKind::Entities,
            (_, k) => k,
        }
    }

    /// What the log says when the read failed.
    fn failure(self) -> &'static str {
        match self {
            Source::Replica => "The database check failed; the other sources wait for the next refresh, the last values are served.",
            Source::Ledger => "Spend-log refresh failed; serving the last values.",
            Source::Entities => "Entity refresh failed; serving the last budget gauges.",
        }
    }

    /// The step of `litellm_exporter_refresh_duration_seconds` the read's time is also shown
    /// under (that metric predates the sources; dashboards use it).
    fn step(self) -> Option<&'static str> {
        match self {
            Source::Replica => None,
            Source::Ledger => Some("ledger"),
            Source::Entities => Some("entities"),
        }
    }
}

pub struct Refresher {
    cfg: Config,
    shared: Arc<Shared>,
    /// The database read now: URL, pool, schema memory.
    db: Database,
    /// The sources this configuration reads, in the order they run.
    sources: Vec<Source>,
    replica: ReplicaSource,
    /// None when the spend log is not read (`exporter.sources.ledger: false`).
    ledger: Option<LedgerSource>,
    entities: EntitySource,
    heartbeat: Heartbeat,
    /// Turns true on shutdown: a catch-up stops after its current chunk, so that the final state
    /// save keeps its progress instead of the process outliving `--web.drain-timeout`.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Refresher {
    pub fn new(cfg: Config, shared: Arc<Shared>) -> Self {
        let mut db = Database::new(
            cfg.target.clone(),
            cfg.pool.clone(),
            cfg.db_url_file.clone(),
            shared.selfm.gave_way.clone(),
        );
        db.schema.spend_log_needed = cfg.sources.ledger;
        let ledger = cfg
            .sources
            .ledger
            .then(|| LedgerSource::new(&cfg, &shared.selfm));
        if let Some(b) = &cfg.memory_budget {
            info!(
                budget = %crate::budget::human(b.bytes),
                from = %b.source,
                classes_share = %crate::budget::human(b.classes_bytes()),
                "Memory guard: label combinations beyond the budget will fold into \"other\" series."
            );
            shared.selfm.memory_budget.set(b.bytes as i64);
        }
        let sources: Vec<Source> = [Source::Replica, Source::Ledger, Source::Entities]
            .into_iter()
            .filter(|s| *s != Source::Ledger || ledger.is_some())
            .collect();
        // Down until read: an alert on a missing series would not see a source that never read.
        for s in &sources {
            shared.selfm.source_up.with_label_values(&[s.name()]).set(0);
        }
        Refresher {
            cfg,
            shared,
            db,
            sources,
            replica: ReplicaSource::default(),
            ledger,
            entities: EntitySource::default(),
            heartbeat: Heartbeat::new(),
            stop: tokio::sync::watch::channel(false).1,
        }
    }

    /// The client-side bound of a read without progress: more than the pool's own timeouts
    /// plus two statements, so that it only fires when the server does not answer.
    fn step_timeout(&self) -> Duration {
        2 * self.cfg.pool.statement_timeout + self.cfg.pool.connect_timeout
    }

    /// Counts a recovery conflict that is about to be retried; false when retries are used up
    /// or the error is something else.
    fn retry_conflict(&self, e: &DbError, attempt: &mut u32, source: Source) -> bool {
        if e.kind() != ErrorKind::Conflict || *attempt >= CONFLICT_RETRIES {
            return false;
        }
        *attempt += 1;
        self.shared.selfm.error(ErrorKind::Conflict);
        info!(source = source.name(), attempt = *attempt, error = %e, "Read cancelled by a recovery conflict on the replica; repeating it.");
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
            self.save(false);
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
                        self.reload();
                    }
                }
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.save(true);
        info!("Refresh loop stopped.");
    }

    /// SIGHUP: a new database URL from `--db-url-file` (the ledger and its reading position
    /// carry on, so no counter restarts), and LiteLLM's stored settings read again.
    fn reload(&mut self) {
        match self.db.reload_url() {
            UrlReload::Swapped => {
                if let Some(l) = &mut self.ledger {
                    l.database_changed();
                }
            }
            UrlReload::Unusable => self.shared.selfm.error(ErrorKind::DbUrlFile),
            UrlReload::NotFromFile | UrlReload::Unchanged => {}
        }
        self.replica.reload();
    }

    /// One refresh: every source in turn. Returns false if any could not be read (its last
    /// values stay); the next refresh then waits longer.
    async fn cycle(&mut self) -> bool {
        let mut read_all = true;
        // `database_up`: every source read, a missing spend log aside (the database answered
        // without it: its own state, `schema_up`).
        let mut db_up = true;
        let mut answers = true;
        for source in self.sources.clone() {
            if !answers {
                self.shared
                    .selfm
                    .source_up
                    .with_label_values(&[source.name()])
                    .set(0);
                continue;
            }
            let Err(e) = self.run_source(source).await else {
                continue;
            };
            read_all = false;
            // The spend log missing, renamed away or replaced is the database's answer (a
            // schema error of the ledger source), not an outage.
            if !(source == Source::Ledger && e.kind() == ErrorKind::Schema) {
                db_up = false;
            }
            // The others would fail alike, each after its own timeout.
            answers = source != Source::Replica;
        }
        if self.ledger.is_none() && answers {
            // Entities only: "caught up" as soon as the database answers.
            self.shared.catch_up_done();
        }
        self.db.schema.refresh_done();
        self.shared
            .selfm
            .pool_connections
            .set(self.db.pool().status().size as i64);
        self.shared.db_up.store(db_up, Ordering::Relaxed);
        if read_all {
            self.shared.selfm.last_success.set(unix_now());
        }
        read_all
    }

    /// One source's read, bounded in time, repeated after a recovery conflict or a replaced
    /// spend log, and reported.
    async fn run_source(&mut self, source: Source) -> Result<(), DbError> {
        let started = Instant::now();
        let limit = self.step_timeout();
        let heartbeat = self.heartbeat.clone();
        let mut attempt = 0;
        let result = loop {
            match bounded(limit, &heartbeat, self.read(source)).await {
                Err(e) if self.retry_conflict(&e, &mut attempt, source) => continue,
                Err(DbError::SpendLogReplaced) if attempt < CONFLICT_RETRIES => {
                    // Not an error: the reads are planned again for the tables there are now.
                    attempt += 1;
                    info!(source = source.name(), "The spend log's tables changed (LiteLLM's partitioning script, or the legacy table dropped); planning the reads again.");
                    self.db.schema.forget();
                    continue;
                }
                r => break r,
            }
        };
        let sm = &self.shared.selfm;
        let took = started.elapsed().as_secs_f64();
        sm.source_duration
            .with_label_values(&[source.name()])
            .set(took);
        if let Some(step) = source.step() {
            sm.refresh_duration.with_label_values(&[step]).set(took);
        }
        sm.source_up
            .with_label_values(&[source.name()])
            .set(i64::from(result.is_ok()));
        if let Err(e) = &result {
            let kind = source.error_kind(e);
            sm.error(kind);
            warn!(source = source.name(), kind = kind.label(), error = %e, "{}", source.failure());
            // A failure may mean a reconnect or a migration: detect the schema again.
            self.db.schema.forget();
        }
        result
    }

    /// One attempt at a source's read, on a connection of its own; the connection goes back to
    /// the pool only if the read was not abandoned (see [`Checkout`]).
    async fn read(&mut self, source: Source) -> Result<(), DbError> {
        let mut client = Checkout {
            obj: Some(self.db.pool().get().await?),
            discarded: self.shared.selfm.connections_discarded.clone(),
        };
        let sm = &self.shared.selfm;
        let r = match source {
            Source::Replica => {
                let r = self.replica.read(&mut client, &mut self.cfg, sm).await;
                if r.is_ok() {
                    self.shared.database_answers();
                }
                r
            }
            Source::Ledger => match &mut self.ledger {
                Some(l) => {
                    let (cfg, shared, stop) = (&self.cfg, &self.shared, &self.stop);
                    l.read(
                        &mut client,
                        &mut self.db,
                        cfg,
                        shared,
                        &self.heartbeat,
                        stop,
                    )
                    .await
                }
                None => Ok(()),
            },
            Source::Entities => {
                self.entities
                    .read(&mut client, &mut self.db, &self.cfg, sm)
                    .await
            }
        };
        client.release();
        r
    }

    /// Renders what the sources hold and publishes it, with the self-metrics of this refresh.
    fn publish(&mut self) {
        let sm = &self.shared.selfm;
        let ledger_bad = self.ledger.as_ref().map_or(0, LedgerSource::bad_numbers);
        SelfMetrics::catch_up_counter(
            &sm.bad_numbers,
            ledger_bad + self.entities.snapshot.bad_numbers,
        );
        if let Some(rss) = resident_bytes() {
            sm.resident.set(rss as i64);
        }
        let t0 = Instant::now();
        let snapshot = &self.entities.snapshot;
        let ledger = match &mut self.ledger {
            Some(l) => {
                l.report(&self.cfg, sm);
                l.exposition(&snapshot.org_aliases, &self.cfg, sm)
            }
            None => ledger::LedgerParts::default(),
        };
        let parts: Vec<Bytes> = ledger
            .parts
            .iter()
            .cloned()
            .chain([snapshot.text.clone()])
            .collect();
        let mut series_total = 0u64;
        for c in ledger.counts.iter().chain(&snapshot.series) {
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
            if ledger.rendered_now {
                give_back_free_memory();
            }
        });
        sm.refresh_duration
            .with_label_values(&["render"])
            .set(t0.elapsed().as_secs_f64());
    }

    /// Saves the state file when due, or now (`force`, at shutdown).
    fn save(&mut self, force: bool) {
        if let Some(l) = &mut self.ledger {
            l.save(force, &self.cfg, &self.shared.selfm);
        }
    }
}
