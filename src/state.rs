//! The state file: the ledger's totals, its memory of recent rows and the reading position,
//! written atomically (temporary file, fsync, rename) so that a restart continues the counters
//! exactly, also after LiteLLM's retention job deleted rows the totals include.

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
    /// The database the state belongs to (host, port and name; never the password).
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

/// Loads a state file. Ok(None): no file yet, or one written for other settings or another
/// database (the caller rebuilds from the database and says why in the log).
pub fn load(
    path: &Path,
    fingerprint: &str,
    database: &str,
) -> Result<Option<(Ledger, Cursor)>, StateError> {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::Io(name, e)),
    };
    let saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| StateError::Format(name.clone(), e.to_string()))?;
    // Said precisely: a rebuild is a cold start, and an operator who sees one after a harmless
    // change (a new port in --db-url) should know which setting caused it.
    let differs = if saved.format != FORMAT {
        Some("by another version of the exporter (state format)")
    } else if saved.fingerprint != fingerprint {
        Some("for other label, bucket or identity settings")
    } else if saved.database != database {
        Some("for another database (the user, host, port or name in --db-url)")
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
    Ok(Some((ledger, saved.cursor.resume())))
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
