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
use crate::db::{self, DbError};
use crate::entities::{self, Snapshot};
use crate::ledger::read::{self, Projection};
use crate::ledger::tail::{Cursor, Tail};
use crate::ledger::Ledger;
use crate::render::LedgerRenderer;
use crate::schema::Schema;
use crate::selfmetrics::SelfMetrics;
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

/// What the HTTP side reads: the last rendered exposition and the readiness facts.
pub struct Shared {
    exposition: RwLock<Arc<Published>>,
    pub selfm: SelfMetrics,
    caught_up: AtomicBool,
    db_up: AtomicBool,
    /// Set after a publish: both facts above hold for what `/metrics` serves.
    ready: AtomicBool,
    /// Catch-up progress in per-mille, for the readiness message.
    progress: AtomicU64,
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
            progress: AtomicU64::new(0),
            gzip_wanted: AtomicBool::new(false),
        }
    }
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
        if !self.db_up.load(Ordering::Relaxed) {
            return Some("the database is unreachable or the last refresh failed".into());
        }
        if !self.caught_up.load(Ordering::Relaxed) {
            let p = self.progress.load(Ordering::Relaxed) as f64 / 10.0;
            return Some(format!("catching up with the spend log ({p:.1}% read)"));
        }
        Some("the first complete refresh is being rendered".into())
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

fn unix_now() -> f64 {
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
    schema: Option<Schema>,
    projection: Option<Projection>,
    entities: Snapshot,
    fingerprint: String,
    /// Which spend log a loaded state file was written for, until it was checked against the
    /// database it is read from (None: no file loaded, or checked).
    saved_database: Option<String>,
    /// Which spend log this process reads (`state::database_identity`), what saves record; None
    /// until known (nothing to save before: the ledger is the loaded one) and again after a new
    /// database URL, until the next connection tells.
    db_identity: Option<String>,
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
                    (l, c, Some(database))
                }
                Ok(None) => (Ledger::default(), Cursor::default(), None),
                Err(e) => {
                    shared.selfm.error("state");
                    warn!(error = %e, "Cannot use the state file; rebuilding from the database.");
                    (Ledger::default(), Cursor::default(), None)
                }
            },
        };
        Refresher {
            tail: Tail::new(cfg.tail.clone(), cursor),
            cfg,
            pool,
            shared,
            ledger,
            renderer: LedgerRenderer::default(),
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
        if e.kind() != "conflict" || *attempt >= CONFLICT_RETRIES {
            return false;
        }
        *attempt += 1;
        self.shared.selfm.error("conflict");
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
        info!(database = %self.cfg.target.display, tls = %self.cfg.target.tls.summary, poll_interval = ?self.cfg.poll_interval, "Starting refresh loop.");
        loop {
            let started = Instant::now();
            let ok = self.cycle().await;
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
                self.shared.selfm.error("db_url_file");
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
        let ledger_ok = match ledger_result {
            Ok(()) => true,
            Err(e) => {
                self.shared.selfm.error(e.kind());
                warn!(kind = e.kind(), error = %e, "Spend-log refresh failed; serving the last values.");
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
                    let kind = if e.kind() == "schema" {
                        "schema"
                    } else {
                        "entities"
                    };
                    if kind == "schema" {
                        self.schema = None;
                    }
                    self.shared.selfm.error(kind);
                    warn!(kind = e.kind(), error = %e, "Entity refresh failed; serving the last budget gauges.");
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
        self.shared.db_up.store(ok, Ordering::Relaxed);
        if ok {
            self.shared.selfm.last_success.set(unix_now());
        }
        ok
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
                return Err(DbError::MissingTable("LiteLLM_SpendLogs"));
            }
            self.projection = Some(Projection::new(
                &schema,
                self.cfg.selection.dims(),
                self.cfg.identity,
                self.cfg.thresholds.clone(),
                self.cfg.stream_label,
                &self.cfg.extras,
            ));
            self.schema = Some(schema);
        }
        if !self.cfg.sources.ledger {
            // Entities only: "caught up" as soon as the database answers.
            self.shared.caught_up.store(true, Ordering::Relaxed);
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
            if !state::same_database(saved, identity, &self.cfg.target.display) {
                warn!("State file was written for another database (its cluster, database or spend-log table differ); rebuilding from the database.");
                self.ledger = Ledger::default();
                self.tail.cursor = Cursor::default();
            } else {
                // A state file from before a database restore would name transactions that
                // never happened in this database; its positions cannot be trusted then.
                let tx = db::read_tx(client).await?;
                let snap = read::snapshot(&tx).await?;
                tx.commit().await?;
                if self.tail.cursor.late_since > snap.xmax {
                    warn!("State file is ahead of the database (restored or replaced?); rebuilding from the database.");
                    self.ledger = Ledger::default();
                    self.tail.cursor = Cursor::default();
                }
            }
            self.saved_database = None;
        }

        if !self.tail.cursor.caught_up() {
            let shared = self.shared.clone();
            let last_log = &mut self.last_progress_log;
            let heartbeat = self.heartbeat.clone();
            let stop = self.stop.clone();
            let started = Instant::now();
            info!("Catching up with the spend log.");
            let done = self
                .tail
                .catch_up(client, &mut self.ledger, &projection, |p| {
                    heartbeat.beat();
                    let ratio = match p.from_ms {
                        Some(from) if p.end_ms > from => {
                            (p.done_ms - from) as f64 / (p.end_ms - from) as f64
                        }
                        _ => 1.0,
                    }
                    .clamp(0.0, 1.0);
                    shared.selfm.catch_up_progress.set(ratio);
                    shared
                        .progress
                        .store((ratio * 1000.0) as u64, Ordering::Relaxed);
                    if last_log.elapsed() >= Duration::from_secs(5) {
                        *last_log = Instant::now();
                        info!(
                            progress = format!("{:.1}%", ratio * 100.0),
                            rows = p.rows,
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
            self.shared.selfm.catch_up_progress.set(1.0);
            self.shared.progress.store(1000, Ordering::Relaxed);
            self.shared.caught_up.store(true, Ordering::Relaxed);
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
                .poll(client, &mut self.ledger, &projection)
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
        if let Some(newest) = stats.newest_start_ms {
            sm.ingest_lag
                .set((unix_now() - newest as f64 / 1000.0).max(0.0));
        }
        sm.remembered_rows.set(self.ledger.remembered_rows() as i64);
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
        for (family, n, folded, folded_rows) in counts.iter().chain(&self.entities.series) {
            sm.series.with_label_values(&[family]).set(*n as i64);
            if *folded > 0 {
                sm.folded_series
                    .with_label_values(&[family])
                    .set(*folded as i64);
                SelfMetrics::catch_up_counter(
                    &sm.folded_rows.with_label_values(&[family]),
                    *folded_rows,
                );
            }
        }
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
        let (Some(path), Some(identity)) = (&self.cfg.state_file, self.db_identity.as_deref())
        else {
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
                identity,
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
                self.shared.selfm.error("state");
                warn!(error = %e, "Cannot write the state file.");
                self.last_save = Some(Instant::now());
            }
        }
    }
}
