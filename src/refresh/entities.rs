//! The entity-table source: budget, limit and count gauges rebuilt from LiteLLM's entity tables
//! on every refresh (`crate::entities`), in a transaction of its own. A table that vanished (a
//! migration) keeps the last gauges, all of them, until it is back.

use deadpool_postgres::Object;

use crate::config::Config;
use crate::db::database::{Database, SPEND_LOGS};
use crate::db::DbError;
use crate::entities::{self, Snapshot};
use crate::selfmetrics::SelfMetrics;

#[derive(Default)]
pub(super) struct EntitySource {
    /// The last gauges read, served until the next read succeeds.
    pub snapshot: Snapshot,
}

impl EntitySource {
    pub async fn read(
        &mut self,
        client: &mut Object,
        db: &mut Database,
        cfg: &Config,
        selfm: &SelfMetrics,
    ) -> Result<(), DbError> {
        let (schema, _) = db.schema.get(client, selfm).await?;
        // The spend log is the ledger's; any other known table gone is this source's failure.
        if let Some(t) = db.schema.vanished().iter().find(|t| **t != SPEND_LOGS) {
            return Err(DbError::MissingTable(t));
        }
        self.snapshot = entities::read(client, &schema, &cfg.entities, &cfg.selection).await?;
        Ok(())
    }
}
