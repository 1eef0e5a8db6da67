//! The state file: the ledger's totals, its memory of recent rows and the reading position,
//! written atomically (temporary file, fsync, rename) so that a restart continues the counters
//! exactly, also after LiteLLM's retention job deleted rows the totals include; and which spend
//! log it belongs to, so that it is reused for that one only.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ledger::tail::Cursor;
use crate::ledger::Ledger;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct Saved {
    pub format: u32,
    /// Settings that change how rows map to classes; state saved under others is not reused.
    pub fingerprint: String,
    /// The spend log the state belongs to: `database_identity`'s text. Files written before it
    /// existed hold the redacted database URL instead (see `same_database`).
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
/// database once connected: `same_database`). Ok(None): no file yet, or one written by another
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

/// Prefix of what `database_identity` returns, which a redacted URL never starts with.
const IDENTITY_PREFIX: &str = "postgresql system ";

/// Which spend log this session reads, independent of the route to it
/// (`sql/state_identity.sql`): what a state file records, and how earlier files named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's system identifier, the database's OID and the OID of the schema holding
    /// the spend log; or, where the server refuses that query, the redacted URL.
    pub text: String,
    /// The same spend log as files written before schemas were recorded named it: by the OID of
    /// the spend-log table, which may now be `LiteLLM_SpendLogs_legacy` (LiteLLM's partitioning
    /// script renamed it and put a new table in its place).
    former: Vec<String>,
}

/// Reads the [`Identity`]. Where the server refuses the identity query (`pg_control_system()`
/// revoked or missing), the redacted URL stands in, as in state files before this check: then a
/// new host, port or role means a rebuild. Any other error (a lost connection) is returned, so
/// that the refresh fails and retries rather than take a flaky moment for another database.
pub async fn database_identity(
    client: &mut deadpool_postgres::Object,
    url_display: &str,
) -> Result<Identity, tokio_postgres::Error> {
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
    let by_url = || Identity {
        text: url_display.to_string(),
        former: Vec::new(),
    };
    match found {
        Ok((Some(system), Some(database), Some(schema), tables)) => Ok(Identity {
            text: format!("{IDENTITY_PREFIX}{system} database {database} schema {schema}"),
            former: tables
                .into_iter()
                .flatten()
                .map(|t| format!("{IDENTITY_PREFIX}{system} database {database} spend log {t}"))
                .collect(),
        }),
        Ok(_) => Ok(by_url()),
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
            Ok(by_url())
        }
        Err(e) => Err(e),
    }
}

/// Whether a state file written for `saved` may continue on the spend log `identity` names.
/// A file from before identities (its `database` is the redacted URL) is accepted when that URL
/// is the current one, as it was then; one from before schemas were recorded when the table it
/// named is the spend log or the legacy table. Its next save records the identity.
pub fn same_database(saved: &str, identity: &Identity, url_display: &str) -> bool {
    if saved.starts_with(IDENTITY_PREFIX) {
        saved == identity.text || identity.former.iter().any(|f| f == saved)
    } else {
        saved == url_display
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
    use super::{same_database, Identity, IDENTITY_PREFIX};

    fn identity(system: &str, database: &str, schema: &str, tables: &[&str]) -> Identity {
        let at = format!("{IDENTITY_PREFIX}{system} database {database}");
        Identity {
            text: format!("{at} schema {schema}"),
            former: tables
                .iter()
                .map(|t| format!("{at} spend log {t}"))
                .collect(),
        }
    }

    #[test]
    fn a_state_file_follows_the_spend_log_not_the_url() {
        let here = identity("7712769022161459553", "16384", "2200", &["16500"]);
        let url = "postgres://exporter@db:5432/litellm";
        // Another route (host, port, role) to the same spend log.
        assert!(same_database(
            &here.text,
            &here,
            "postgres://vault-123@pgbouncer:6432/litellm"
        ));
        // Another cluster, database or schema.
        for other in [
            here.text
                .replace("7712769022161459553", "7712769022161459554"),
            here.text.replace("database 16384", "database 16385"),
            here.text.replace("schema 2200", "schema 2201"),
        ] {
            assert!(!same_database(&other, &here, url), "{other}");
        }
        // A file written before identities holds the URL: accepted for that URL only.
        assert!(same_database(url, &here, url));
        assert!(!same_database(
            url,
            &here,
            "postgres://exporter@other:5432/litellm"
        ));
        // A server that refuses the identity query stands in its URL: a file that recorded an
        // identity is not taken for it.
        let refused = Identity {
            text: url.to_string(),
            former: Vec::new(),
        };
        assert!(!same_database(&here.text, &refused, url));
    }

    #[test]
    fn a_state_file_naming_the_table_survives_litellms_partitioning() {
        let before = format!("{IDENTITY_PREFIX}7712769022161459553 database 16384 spend log 16500");
        // LiteLLM's script renamed table 16500 to LiteLLM_SpendLogs_legacy; 17000 is the new one.
        let after = identity("7712769022161459553", "16384", "2200", &["17000", "16500"]);
        assert!(same_database(&before, &after, "u"));
        // The same file against another table, or another database holding that OID.
        assert!(!same_database(
            &before,
            &identity("7712769022161459553", "16384", "2200", &["17000"]),
            "u"
        ));
        assert!(!same_database(
            &before,
            &identity("7712769022161459553", "16385", "2200", &["16500"]),
            "u"
        ));
    }
}
