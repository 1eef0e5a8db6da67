//! The spend-log source: the ledger and the tail that feeds it (the start-up catch-up, then a
//! poll every refresh), the state file it resumes from and saves to, and the render of the
//! ledger's families. It reads in transactions of its own; the scheduler (`refresh`) bounds,
//! retries and reports it.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::Object;
use tracing::{debug, info, warn};

use super::{unix_now, CatchUpStatus, Heartbeat, Shared};
use crate::config::Config;
use crate::db::database::{Database, SPEND_LOGS};
use crate::db::DbError;
use crate::ledger::read::Projection;
use crate::ledger::tail::{Cursor, Tail};
use crate::ledger::Ledger;
use crate::render::{FamilyCounts, LedgerRenderer};
use crate::selfmetrics::{ErrorKind, SelfMetrics};
use crate::state::{Resume, StateFile};

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
    counts: FamilyCounts,
}

/// The ledger's part of an exposition.
#[derive(Default)]
pub(super) struct LedgerParts {
    pub parts: Vec<Bytes>,
    pub counts: FamilyCounts,
    /// Rendered in this call (not the previous render again): its garbage is worth returning.
    pub rendered_now: bool,
}

pub(super) struct LedgerSource {
    ledger: Ledger,
    tail: Tail,
    state: Option<StateFile>,
    /// How the spend log is read, planned for the schema detection it is tagged with.
    projection: Option<(u64, Projection)>,
    renderer: LedgerRenderer,
    /// The last render and what it was made from, reused while neither has changed.
    rendered: Option<Rendered>,
    /// The memory guard's fold level last reported: a higher one is warned about once.
    fold_level_seen: u32,
    /// Whether the remembered rows were last seen outgrowing their share of the budget (warned
    /// once each time they do).
    rows_over_budget: bool,
    last_progress_log: Instant,
}

impl LedgerSource {
    /// The ledger as the state file left it, or empty.
    pub fn new(cfg: &Config, selfm: &SelfMetrics) -> Self {
        let mut state = cfg
            .state_file
            .clone()
            .map(|path| StateFile::new(path, fingerprint(cfg)));
        let loaded = match &mut state {
            None => None,
            Some(s) => match s.load() {
                Ok(loaded) => loaded,
                Err(e) => {
                    selfm.error(ErrorKind::State);
                    warn!(error = %e, "Cannot use the state file; rebuilding from the database.");
                    None
                }
            },
        };
        if let (Some(s), Some((ledger, _))) = (&state, &loaded) {
            info!(path = %s.path().display(), classes = ledger.classes().len(), "Loaded state file; resuming the counters.");
        }
        let (mut ledger, cursor) = loaded.unwrap_or_default();
        ledger.set_fold(cfg.fold_rule());
        LedgerSource {
            ledger,
            tail: Tail::new(cfg.tail.clone(), cursor),
            state,
            projection: None,
            renderer: LedgerRenderer::default(),
            rendered: None,
            fold_level_seen: 0,
            rows_over_budget: false,
            last_progress_log: Instant::now(),
        }
    }

    pub fn bad_numbers(&self) -> u64 {
        self.ledger.stats.bad_numbers
    }

    /// A new database URL: the counters carry on; saves record the new spend log once known.
    pub fn database_changed(&mut self) {
        if let Some(s) = &mut self.state {
            s.forget_identity();
        }
    }

    /// One read: plan it for the schema, check a loaded state file, then catch up or poll.
    pub async fn read(
        &mut self,
        client: &mut Object,
        db: &mut Database,
        cfg: &Config,
        shared: &Shared,
        heartbeat: &Heartbeat,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), DbError> {
        let projection = self.plan(client, db, cfg, shared).await?;
        self.resume(client, db, cfg).await?;
        if self.tail.cursor.caught_up() {
            shared.caught_up.store(true, Ordering::Relaxed);
            self.poll(client, db, &projection, &shared.selfm).await
        } else {
            self.catch_up(client, db, &projection, shared, heartbeat, stop)
                .await
        }
    }

    /// The projection for the schema as detected now; the spend log missing is the database's
    /// own state (`schema_up`, `/-/ready`), not an outage.
    async fn plan(
        &mut self,
        client: &mut Object,
        db: &mut Database,
        cfg: &Config,
        shared: &Shared,
    ) -> Result<Projection, DbError> {
        let (schema, detection) = db.schema.get(client, &shared.selfm).await?;
        if !schema.has_table(SPEND_LOGS) {
            shared.set_schema_problem(Some(missing_spend_log_message(db)));
            return Err(DbError::MissingTable(SPEND_LOGS));
        }
        shared.set_schema_problem(None);
        match &self.projection {
            Some((d, p)) if *d == detection => Ok(p.clone()),
            _ => {
                let p = cfg.projection(&schema);
                self.projection = Some((detection, p.clone()));
                Ok(p)
            }
        }
    }

    /// Checks a loaded state file against the database once (`StateFile::check`); counts from
    /// scratch if it belongs elsewhere.
    async fn resume(
        &mut self,
        client: &mut Object,
        db: &Database,
        cfg: &Config,
    ) -> Result<(), DbError> {
        let Some(state) = &mut self.state else {
            return Ok(());
        };
        let resume = state
            .check(client, &db.target().display, &self.tail.cursor)
            .await?;
        if resume == Resume::Rebuild {
            self.ledger = Ledger::default();
            self.ledger.set_fold(cfg.fold_rule());
            self.tail.cursor = Cursor::default();
        }
        Ok(())
    }

    /// The start-up catch-up, in bounded chunks: each one is a sign of life for the client-side
    /// timeout and a progress report; a shutdown stops it after the current chunk.
    async fn catch_up(
        &mut self,
        client: &mut Object,
        db: &Database,
        projection: &Projection,
        shared: &Shared,
        heartbeat: &Heartbeat,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), DbError> {
        // Taken again at every (re)start of the catch-up, from where its cursor stands.
        let estimate = self.tail.catch_up_estimate(client, projection).await?;
        let last_log = &mut self.last_progress_log;
        let started = Instant::now();
        info!(
            rows_estimate = estimate.map(|e| e.round() as u64),
            "Catching up with the spend log."
        );
        shared.selfm.catching_up.set(1);
        let done = self
            .tail
            .catch_up(client, db.give_way(), &mut self.ledger, projection, |p| {
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
        shared.catch_up_done();
        info!(
            rows = self.ledger.stats.rows_ingested,
            classes = self.ledger.classes().len(),
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "Catch-up complete."
        );
        Ok(())
    }

    /// A steady-state poll: new rows, and rewrites of recent ones.
    async fn poll(
        &mut self,
        client: &mut Object,
        db: &Database,
        projection: &Projection,
        selfm: &SelfMetrics,
    ) -> Result<(), DbError> {
        let r = self
            .tail
            .poll(client, db.give_way(), &mut self.ledger, projection)
            .await?;
        selfm.poll_rows_read.set(r.rows_read as i64);
        debug!(
            read = r.rows_read,
            new = r.new_rows,
            grown = r.grown_rows,
            window_s = r.window_ms / 1000,
            "Polled the spend log."
        );
        Ok(())
    }

    /// The ledger's self-metrics: what was counted, how fresh it is, the memory guard.
    pub fn report(&mut self, cfg: &Config, sm: &SelfMetrics) {
        let stats = &self.ledger.stats;
        SelfMetrics::catch_up_counter(&sm.rows_ingested, stats.rows_ingested);
        SelfMetrics::catch_up_counter(&sm.corrections_ignored, stats.corrections_ignored);
        // During the catch-up the newest row counted is history: no lag to report yet.
        if let (true, Some(newest)) = (self.tail.cursor.caught_up(), stats.newest_start_ms) {
            sm.ingest_lag
                .set((unix_now() - newest as f64 / 1000.0).max(0.0));
        }
        sm.remembered_rows.set(self.ledger.remembered_rows() as i64);
        self.report_fold(cfg, sm);
    }

    /// The memory guard's self-metrics, and a warning each time it folds further.
    fn report_fold(&mut self, cfg: &Config, sm: &SelfMetrics) {
        let (level, cost) = self.ledger.fold_state();
        sm.fold_level.set(i64::from(level));
        sm.classes_estimate.set(cost as i64);
        SelfMetrics::catch_up_counter(&sm.memory_folded_classes, self.ledger.stats.folded_classes);
        SelfMetrics::catch_up_counter(&sm.memory_folded_rows, self.ledger.overflow_rows());
        let Some(b) = &cfg.memory_budget else {
            return;
        };
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
        if level > self.fold_level_seen {
            self.fold_level_seen = level;
            warn!(
                budget = %crate::budget::human(b.bytes),
                fold_level = level,
                classes_kept = self.ledger.classes().len(),
                classes_folded = self.ledger.stats.folded_classes,
                "Memory guard: the label combinations seen need more than the memory budget; about 1 in 2^fold_level of them keep series of their own (chosen by a hash of their labels, the same in every exporter), the others now count in series whose labels read \"other\". Totals stay exact. Narrow the labels (prometheus_metrics_config) or raise --memory.budget to keep more."
            );
        }
    }

    /// The ledger's families, rendered again only if the totals or the organization names
    /// changed. Until this process has caught up, its totals may lag the values a previous
    /// process served (a state file is only saved every 30 s): serving them could look like a
    /// counter reset, so the ledger families appear only once they are complete.
    pub fn exposition(
        &mut self,
        org_aliases: &std::collections::HashMap<String, String>,
        cfg: &Config,
        sm: &SelfMetrics,
    ) -> LedgerParts {
        let unchanged = self.rendered.as_ref().is_some_and(|r| {
            r.generation == self.ledger.generation() && self.renderer.rendered_with(org_aliases)
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
                    org_aliases,
                    &cfg.thresholds,
                    &cfg.selection,
                )
            });
            sm.renders.inc();
            self.rendered = Some(Rendered {
                generation: self.ledger.generation(),
                parts: parts.into_iter().map(Bytes::from).collect(),
                counts,
            });
        }
        match &self.rendered {
            Some(r) => LedgerParts {
                parts: r.parts.clone(),
                counts: r.counts.clone(),
                rendered_now,
            },
            None => LedgerParts {
                parts: Vec::new(),
                counts: Vec::new(),
                rendered_now,
            },
        }
    }

    /// Saves the state file when due (or `force`d, at shutdown).
    pub fn save(&mut self, force: bool, cfg: &Config, sm: &SelfMetrics) {
        let Some(state) = &mut self.state else {
            return;
        };
        match state.maybe_save(force, cfg.poll_interval, &self.ledger, &self.tail.cursor) {
            None => {}
            Some(Ok(())) => sm.state_saved.set(unix_now()),
            Some(Err(e)) => {
                sm.error(ErrorKind::State);
                warn!(error = %e, "Cannot write the state file.");
            }
        }
    }
}

/// What `/-/ready` says when the database answers without LiteLLM's spend log.
fn missing_spend_log_message(db: &Database) -> String {
    let name = &db.target().display;
    if db.schema.vanished().contains(&SPEND_LOGS) {
        format!("LiteLLM's spend-log table \"{SPEND_LOGS}\" disappeared from {name} (a migration in progress?); the last values are served until it is back")
    } else {
        format!("the database {name} answers but has no LiteLLM spend-log table \"{SPEND_LOGS}\": the wrong database or schema (the URL's ?schema= or the role's search_path), or LiteLLM's migrations have not run yet")
    }
}
