//! The database the refresh loop reads, as it stands now: its URL (swapped on SIGHUP when
//! `--db-url-file` names another one), the pool of sessions to it with the watcher that lets the
//! spend-log reads give way (`give_way`), and the memory of its LiteLLM schema (`SchemaMemory`).
//! The validated `Config` keeps the start-up URL; only this type knows the current one.

use std::collections::BTreeSet;
use std::path::PathBuf;

use deadpool_postgres::Pool;
use prometheus::IntCounter;
use tracing::{debug, error, info, warn};

use super::give_way::GiveWay;
use super::{DbError, PoolSettings, Target};
use crate::schema::{Schema, TABLES};
use crate::selfmetrics::SelfMetrics;

/// The spend log's table name, which the schema memory treats like any other table.
pub const SPEND_LOGS: &str = "LiteLLM_SpendLogs";

/// What a SIGHUP did to the database URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlReload {
    /// The URL was not read from a file: nothing to re-read.
    NotFromFile,
    /// The file names the URL in use.
    Unchanged,
    /// A new URL: a new pool, and the schema will be detected again.
    Swapped,
    /// The file cannot be read or parsed: the current URL stays (an error to count).
    Unusable,
}

pub struct Database {
    target: Target,
    settings: PoolSettings,
    url_file: Option<PathBuf>,
    pool: Pool,
    give_way: GiveWay,
    /// `litellm_exporter_reads_given_way_total`, handed to each new `GiveWay`.
    gave_way: IntCounter,
    pub schema: SchemaMemory,
}

impl Database {
    pub fn new(
        target: Target,
        settings: PoolSettings,
        url_file: Option<PathBuf>,
        gave_way: IntCounter,
    ) -> Self {
        let pool = super::pool(&target, &settings);
        Database {
            give_way: GiveWay::new(pool.clone(), gave_way.clone()),
            target,
            settings,
            url_file,
            pool,
            gave_way,
            schema: SchemaMemory::default(),
        }
    }

    /// The URL read now, redacted, TLS summary included.
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Watches the spend-log reads from a second session of the pool.
    pub fn give_way(&self) -> &GiveWay {
        &self.give_way
    }

    /// SIGHUP: re-reads `--db-url-file`. A changed URL gets a new pool (the old sessions close)
    /// and a new schema detection; what was counted carries on (the caller's business). An
    /// unreadable or invalid file keeps the current URL.
    pub fn reload_url(&mut self) -> UrlReload {
        let Some(path) = self.url_file.clone() else {
            debug!("SIGHUP: the database URL was not read from a file; nothing to re-read.");
            return UrlReload::NotFromFile;
        };
        let target = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| super::parse_url(&text).map_err(|e| e.to_string()));
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                error!(file = %path.display(), error = %e, "SIGHUP: cannot use the database URL file; keeping the current database URL.");
                return UrlReload::Unusable;
            }
        };
        if target.url_digest == self.target.url_digest {
            info!(file = %path.display(), "SIGHUP: the database URL is unchanged.");
            return UrlReload::Unchanged;
        }
        info!(database = %target.display, tls = %target.tls.summary, "SIGHUP: new database URL; reconnecting, counters continue.");
        self.pool.close();
        self.pool = super::pool(&target, &self.settings);
        self.give_way = GiveWay::new(self.pool.clone(), self.gave_way.clone());
        self.target = target;
        // Another server may run another LiteLLM version.
        self.schema.forget();
        UrlReload::Swapped
    }
}

/// What is known of LiteLLM's tables in the database read: detected when first needed, again
/// after any failed read (a reconnect or a migration may have changed it) and on every refresh
/// while a table seen earlier is gone.
#[derive(Debug, Default)]
pub struct SchemaMemory {
    current: Option<Schema>,
    /// Detections so far: tells the users of the schema that it may have changed.
    detections: u64,
    /// Tables seen in this database since start. One that disappears later is taken for a
    /// migration in progress: an error, with the last values kept, rather than a schema change.
    known: BTreeSet<&'static str>,
    /// Known tables missing at the last detection.
    vanished: Vec<&'static str>,
    /// Whether the spend log is read at all: then its absence is `schema_up` 0 from the
    /// detection that finds it, whichever source detected (the entities may, after the
    /// ledger's read failed), not only from the ledger's next read.
    pub spend_log_needed: bool,
}

impl SchemaMemory {
    /// The schema, detected now (on `client`) if it is not known; its features are reported and
    /// each missing table is said in the log.
    pub async fn get(
        &mut self,
        client: &tokio_postgres::Client,
        selfm: &SelfMetrics,
    ) -> Result<(Schema, u64), DbError> {
        if let Some(s) = &self.current {
            return Ok((s.clone(), self.detections));
        }
        let schema = Schema::detect(client).await?;
        for (feature, present) in schema.features() {
            selfm
                .schema_feature
                .with_label_values(&[&feature])
                .set(i64::from(present));
        }
        if self.spend_log_needed {
            selfm
                .schema_up
                .set(i64::from(schema.has_table("LiteLLM_SpendLogs")));
        }
        let missing = schema.missing_tables();
        self.vanished = missing
            .iter()
            .copied()
            .filter(|t| self.known.contains(t))
            .collect();
        self.known
            .extend(TABLES.iter().copied().filter(|t| schema.has_table(t)));
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
        self.detections += 1;
        self.current = Some(schema.clone());
        Ok((schema, self.detections))
    }

    /// Detect again at the next use.
    pub fn forget(&mut self) {
        self.current = None;
    }

    /// Known tables missing at the last detection.
    pub fn vanished(&self) -> &[&'static str] {
        &self.vanished
    }

    /// The end of a refresh: known tables that vanished are looked for again next time, to see
    /// them come back.
    pub fn refresh_done(&mut self) {
        if !self.vanished.is_empty() {
            self.forget();
        }
    }
}
