//! The state file: the ledger's totals, its memory of recent rows and the reading position,
//! written atomically (temporary file, fsync, rename) so that a restart continues the counters
//! exactly, also after LiteLLM's retention job deleted rows the totals include; and which spend
//! log it belongs to, so that it is reused for that one only. `StateFile` owns a run's file: its
//! loading, the checks against the database read, and the timing of saves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ledger::tail::Cursor;
use crate::ledger::Ledger;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct Saved {
    pub format: u32,
    /// Settings that change how rows map to classes; state saved under others is not reused.
    pub fingerprint: String,
    /// The spend log the state belongs to: a `SpendLog`'s text. Files written before identities
    /// existed hold the redacted database URL instead (`SpendLog::Url`).
    pub database: String,
    pub ledger: Ledger,
    pub cursor: Cursor,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {0}: {1}")]
    Io(String, std::io::Error),
    #[error("state file {0} is not readable state: {1}")]
    Format(String, String),
}

/// Loads a state file, and says which spend log it was written for (checked against the
/// database once connected: `SpendLog::continues_on`). Ok(None): no file yet, or one written by another
/// version or for other settings (the caller rebuilds from the database; the log says why).
pub fn load(
    path: &Path,
    fingerprint: &str,
) -> Result<Option<(Ledger, Cursor, String)>, StateError> {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::Io(name, e)),
    };
    let saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| StateError::Format(name.clone(), e.to_string()))?;
    // Said precisely: a rebuild is a cold start, and an operator who sees one after a harmless
    // change should know which setting caused it.
    let differs = if saved.format != FORMAT {
        Some("by another version of the exporter (state format)")
    } else if saved.fingerprint != fingerprint {
        Some("for other label, bucket or identity settings")
    } else {
        None
    };
    if let Some(why) = differs {
        tracing::warn!(
            path = %name,
            written = why,
            "State file does not match this run; rebuilding from the database."
        );
        return Ok(None);
    }
    let mut ledger = saved.ledger;
    ledger.reindex();
    Ok(Some((ledger, saved.cursor.resume(), saved.database)))
}

/// Which spend log a state file belongs to: `database_identity` finds it for the database read,
/// `Saved::database` spells it (`Display`, `from_saved`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendLog {
    /// The cluster's system identifier, the database's OID and the OID of the schema holding the
    /// spend log: the same whatever the route to them (host, port, role, a pooler), and across
    /// LiteLLM's own replacement of the table (its partitioning and unpartitioning scripts).
    /// `tables` are the OIDs of the spend log and of `LiteLLM_SpendLogs_legacy`, by which files
    /// written before schemas were recorded named it; not part of what a file records.
    Cluster {
        system: String,
        database: String,
        schema: String,
        tables: Vec<String>,
    },
    /// How files written before schemas were recorded named it: by the spend-log table's OID
    /// (which LiteLLM's partitioning script renames to `LiteLLM_SpendLogs_legacy`).
    Table {
        system: String,
        database: String,
        table: String,
    },
    /// The redacted database URL: where the server refuses the identity query, and in state
    /// files written before identities existed. Then a new host, port or role means a rebuild.
    Url(String),
}

/// How a state file spells `SpendLog::Cluster`; a redacted URL never starts with it.
const IDENTITY_PREFIX: &str = "postgresql system ";

impl SpendLog {
    /// What a state file's `database` says (its text, as `Display` wrote it).
    pub fn from_saved(text: &str) -> SpendLog {
        let cluster = text.strip_prefix(IDENTITY_PREFIX).and_then(|rest| {
            let (system, rest) = rest.split_once(" database ")?;
            if let Some((database, schema)) = rest.split_once(" schema ") {
                return Some(SpendLog::Cluster {
                    system: system.to_string(),
                    database: database.to_string(),
                    schema: schema.to_string(),
                    tables: Vec::new(),
                });
            }
            let (database, table) = rest.split_once(" spend log ")?;
            Some(SpendLog::Table {
                system: system.to_string(),
                database: database.to_string(),
                table: table.to_string(),
            })
        });
        cluster.unwrap_or_else(|| SpendLog::Url(text.to_string()))
    }

    /// Whether a state file written for this spend log may continue on `current`, read through
    /// `url_display`. A file from before identities (its URL) is accepted when that URL is the
    /// current one, as it was then; one from before schemas when the table it named is the spend
    /// log or the legacy table. Its next save records the identity.
    pub fn continues_on(&self, current: &SpendLog, url_display: &str) -> bool {
        let SpendLog::Cluster {
            system: cs,
            database: cd,
            schema: cn,
            tables,
        } = current
        else {
            return matches!(self, SpendLog::Url(url) if url == url_display);
        };
        match self {
            SpendLog::Cluster {
                system,
                database,
                schema,
                ..
            } => (system, database, schema) == (cs, cd, cn),
            SpendLog::Table {
                system,
                database,
                table,
            } => (system, database) == (cs, cd) && tables.contains(table),
            SpendLog::Url(url) => url == url_display,
        }
    }
}

impl std::fmt::Display for SpendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpendLog::Cluster {
                system,
                database,
                schema,
                ..
            } => write!(
                f,
                "{IDENTITY_PREFIX}{system} database {database} schema {schema}"
            ),
            SpendLog::Table {
                system,
                database,
                table,
            } => write!(
                f,
                "{IDENTITY_PREFIX}{system} database {database} spend log {table}"
            ),
            SpendLog::Url(url) => f.write_str(url),
        }
    }
}

/// Reads the [`SpendLog`] this session reads (`sql/state_identity.sql`). Where the server
/// refuses the identity query (`pg_control_system()` revoked or missing), the redacted URL
/// stands in, as in state files before this check: then a new host, port or role means a
/// rebuild. Any other error (a lost connection) is returned, so that the refresh fails and
/// retries rather than take a flaky moment for another database.
pub async fn database_identity(
    client: &mut deadpool_postgres::Object,
    url_display: &str,
) -> Result<SpendLog, tokio_postgres::Error> {
    use tokio_postgres::error::SqlState;
    let found = async {
        let tx = crate::db::read_tx(client).await?;
        let row = tx.query_one(crate::sql::STATE_IDENTITY, &[]).await?;
        let get = |name: &str| row.try_get::<_, Option<String>>(name);
        let parts = (
            get("system_id")?,
            get("database_oid")?,
            get("spend_logs_schema")?,
            [get("spend_logs_oid")?, get("legacy_oid")?],
        );
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(parts)
    }
    .await;
    match found {
        Ok((Some(system), Some(database), Some(schema), tables)) => Ok(SpendLog::Cluster {
            system,
            database,
            schema,
            tables: tables.into_iter().flatten().collect(),
        }),
        Ok(_) => Ok(SpendLog::Url(url_display.to_string())),
        Err(e)
            if [
                &SqlState::INSUFFICIENT_PRIVILEGE,
                &SqlState::UNDEFINED_FUNCTION,
                &SqlState::FEATURE_NOT_SUPPORTED,
            ]
            .contains(&e.code().unwrap_or(&SqlState::SUCCESSFUL_COMPLETION)) =>
        {
            tracing::warn!(
                error = %crate::db::describe(&e),
                "Cannot read the identity of the database (pg_control_system() is refused); the state file is tied to the database URL instead."
            );
            Ok(SpendLog::Url(url_display.to_string()))
        }
        Err(e) => Err(e),
    }
}

/// The state file of this run: where it is, the settings it must match, which spend log a loaded
/// file was written for (until that is checked against the database read), which spend log the
/// saves record, and when to save.
pub struct StateFile {
    path: PathBuf,
    fingerprint: String,
    /// Which spend log a loaded file was written for, until checked against the database it is
    /// read from (None: no file loaded, or checked). Checked once: after a new URL on SIGHUP the
    /// counters carry on, and the saves just record where they are read from.
    unchecked: Option<SpendLog>,
    /// Which spend log this process reads, what saves record; None until known (nothing to save
    /// before: the ledger is the loaded one) and again after a new database URL, until the next
    /// connection tells.
    identity: Option<SpendLog>,
    last_save: Option<Instant>,
    /// How long the last save took: saves are spaced to at least 20 times that, so that writing
    /// a large ledger (a ~1 GB file for 700k label classes) stays a small share of the time.
    last_save_took: Duration,
}

/// Whether the counters loaded from a state file may continue on the database read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Nothing loaded, or loaded for this spend log and not ahead of it.
    Continue,
    /// Written for another spend log, or ahead of this one (a restore): count from scratch.
    Rebuild,
}

impl StateFile {
    pub fn new(path: PathBuf, fingerprint: String) -> Self {
        StateFile {
            path,
            fingerprint,
            unchecked: None,
            identity: None,
            last_save: None,
            last_save_took: Duration::ZERO,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the file (see [`load`]); what it returns is to be checked with [`Self::check`] once
    /// the database answers.
    pub fn load(&mut self) -> Result<Option<(Ledger, Cursor)>, StateError> {
        Ok(
            load(&self.path, &self.fingerprint)?.map(|(ledger, cursor, database)| {
                self.unchecked = Some(SpendLog::from_saved(&database));
                (ledger, cursor)
            }),
        )
    }

    /// Learns which spend log `client` reads (once per connection target), and checks a loaded
    /// file against it once: another spend log, or a cursor ahead of the database's transactions
    /// (a state file from before a database restore), means a rebuild.
    pub async fn check(
        &mut self,
        client: &mut deadpool_postgres::Object,
        url_display: &str,
        cursor: &Cursor,
    ) -> Result<Resume, crate::db::DbError> {
        if self.identity.is_none() {
            self.identity = Some(database_identity(client, url_display).await?);
        }
        let (Some(saved), Some(identity)) = (&self.unchecked, &self.identity) else {
            return Ok(Resume::Continue);
        };
        let resume = if !saved.continues_on(identity, url_display) {
            tracing::warn!("State file was written for another database (its cluster, database or LiteLLM schema differ); rebuilding from the database.");
            Resume::Rebuild
        } else {
            // A state file from before a database restore would name transactions that never
            // happened in this database; its positions cannot be trusted then.
            let tx = crate::db::read_tx(client).await?;
            let snap = crate::ledger::read::snapshot(&tx).await?;
            tx.commit().await?;
            if cursor.late_since > snap.xmax {
                tracing::warn!("State file is ahead of the database (restored or replaced?); rebuilding from the database.");
                Resume::Rebuild
            } else {
                Resume::Continue
            }
        };
        self.unchecked = None;
        Ok(resume)
    }

    /// A new database URL: saves record the spend log read once the new database answers.
    pub fn forget_identity(&mut self) {
        self.identity = None;
    }

    /// Saves when `force`d (shutdown) or due: every 30 s, `poll_interval` or 20 times the last
    /// save's duration, whichever is longest. None: nothing done (not due, or the spend log read
    /// is not known yet).
    pub fn maybe_save(
        &mut self,
        force: bool,
        poll_interval: Duration,
        ledger: &Ledger,
        cursor: &Cursor,
    ) -> Option<Result<(), StateError>> {
        let identity = self.identity.as_ref()?;
        let every = Duration::from_secs(30)
            .max(poll_interval)
            .max(self.last_save_took * 20);
        let due = self.last_save.is_none_or(|t| t.elapsed() >= every);
        if !(force || due) {
            return None;
        }
        let started = Instant::now();
        // Serializing a large ledger is seconds of CPU: off the async workers, like a render.
        let saved = tokio::task::block_in_place(|| {
            save(
                &self.path,
                &self.fingerprint,
                &identity.to_string(),
                ledger,
                cursor,
            )
        });
        self.last_save_took = started.elapsed();
        // A failed save is tried again when the next one is due, not on every refresh.
        self.last_save = Some(Instant::now());
        tracing::debug!(
            seconds = self.last_save_took.as_secs_f64(),
            "Saved the state file."
        );
        Some(saved)
    }
}

/// Makes sure the state file can be written where it is asked for, before the exporter starts:
/// its directory is created if missing, and a file is written there and removed (a read-only
/// volume or a directory owned by another user is said now, not at the first save after a
/// catch-up of minutes). The error says what to fix.
pub fn prepare_dir(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return Err(format!(
            "--state.file {} is a directory; give the path of a file in it, e.g. {}",
            path.display(),
            path.join("state.json").display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the state file's directory {}: {e}",
            dir.display()
        )
    })?;
    let probe = path.with_extension("probe");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            format!(
                "cannot write the state file {} (writing {} failed: {e}); give a writable path with --state.file",
                path.display(),
                probe.display()
            )
        })
}

pub fn save(
    path: &Path,
    fingerprint: &str,
    database: &str,
    ledger: &Ledger,
    cursor: &Cursor,
) -> Result<(), StateError> {
    #[derive(Serialize)]
    struct SavedRef<'a> {
        format: u32,
        fingerprint: &'a str,
        database: &'a str,
        ledger: &'a Ledger,
        cursor: &'a Cursor,
    }
    let name = path.display().to_string();
    let io = |e| StateError::Io(name.clone(), e);
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    serde_json::to_writer(
        &mut f,
        &SavedRef {
            format: FORMAT,
            fingerprint,
            database,
            ledger,
            cursor,
        },
    )
    .map_err(|e| StateError::Format(name.clone(), e.to_string()))?;
    f.flush().map_err(io)?;
    f.get_ref().sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SpendLog;

    fn here(tables: &[&str]) -> SpendLog {
        SpendLog::Cluster {
            system: "7712769022161459553".into(),
            database: "16384".into(),
            schema: "2200".into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn a_state_file_follows_the_spend_log_not_the_url() {
        let here = here(&["16500"]);
        let url = "postgres://exporter@db:5432/litellm";
        let text = here.to_string();
        // What a file records reads back as the same spend log.
        assert!(SpendLog::from_saved(&text).continues_on(&here, url));
        // Another route (host, port, role) to the same spend log.
        assert!(here.continues_on(&here, "postgres://vault-123@pgbouncer:6432/litellm"));
        // Another cluster, database or schema.
        for other in [
            text.replace("7712769022161459553", "7712769022161459554"),
            text.replace("database 16384", "database 16385"),
            text.replace("schema 2200", "schema 2201"),
        ] {
            assert!(
                !SpendLog::from_saved(&other).continues_on(&here, url),
                "{other}"
            );
        }
        // A file written before identities holds the URL: accepted for that URL only.
        let old = SpendLog::from_saved(url);
        assert_eq!(old, SpendLog::Url(url.into()));
        assert!(old.continues_on(&here, url));
        assert!(!old.continues_on(&here, "postgres://exporter@other:5432/litellm"));
        // A server that refuses the identity query stands in its URL: a file that recorded an
        // identity is not taken for it.
        assert!(!here.continues_on(&SpendLog::Url(url.into()), url));
    }

    #[test]
    fn a_state_file_naming_the_table_survives_litellms_partitioning() {
        let before = SpendLog::from_saved(
            "postgresql system 7712769022161459553 database 16384 spend log 16500",
        );
        assert!(matches!(before, SpendLog::Table { .. }));
        // LiteLLM's script renamed table 16500 to LiteLLM_SpendLogs_legacy; 17000 is the new one.
        assert!(before.continues_on(&here(&["17000", "16500"]), "u"));
        // The same file against another table, or another database holding that OID.
        assert!(!before.continues_on(&here(&["17000"]), "u"));
        let elsewhere = SpendLog::Cluster {
            system: "7712769022161459553".into(),
            database: "16385".into(),
            schema: "2200".into(),
            tables: vec!["16500".into()],
        };
        assert!(!before.continues_on(&elsewhere, "u"));
    }
}
