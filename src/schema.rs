//! Which LiteLLM tables and columns exist in the connected database. Detected at start and after
//! every reconnect; a missing optional table or column switches off only what needs it.

use std::collections::{BTreeMap, BTreeSet};

use crate::sql;

/// The tables the exporter reads.
pub const TABLES: &[&str] = &[
    "LiteLLM_SpendLogs",
    "LiteLLM_TeamTable",
    "LiteLLM_VerificationToken",
    "LiteLLM_UserTable",
    "LiteLLM_OrganizationTable",
    "LiteLLM_BudgetTable",
    "LiteLLM_EndUserTable",
];

/// The spend log as it was before LiteLLM's partitioning script (`db_scripts/partition_spend_logs.sql`)
/// moved it aside and created a partitioned one in its place: its rows are still read, those not
/// copied into the new table. Detected like the tables above, never required.
pub const LEGACY_SPEND_LOGS: &str = "LiteLLM_SpendLogs_legacy";

/// Optional spend-log columns the exporter uses when present (README: "Schema versions").
pub const OPTIONAL_SPEND_LOG_COLUMNS: &[&str] = &["status", "organization_id"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    tables: BTreeMap<String, BTreeSet<String>>,
}

impl Schema {
    pub async fn detect(client: &tokio_postgres::Client) -> Result<Schema, tokio_postgres::Error> {
        let names: Vec<String> = TABLES
            .iter()
            .chain([&LEGACY_SPEND_LOGS])
            .map(|s| s.to_string())
            .collect();
        let rows = client.query(sql::SCHEMA_COLUMNS, &[&names]).await?;
        for r in client.query(sql::UNREADABLE_TABLES, &[&names]).await? {
            let table: String = r.try_get(0)?;
            tracing::warn!(
                %table,
                "A LiteLLM table exists but is not readable by this role, so it counts as missing: run sql/setup/readonly_role.sql again (a table LiteLLM replaced, as its spend-log partitioning scripts do, keeps none of the old grants)."
            );
        }
        let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rows {
            let t: String = r.try_get(0)?;
            let c: String = r.try_get(1)?;
            tables.entry(t).or_default().insert(c);
        }
        Ok(Schema { tables })
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    pub fn has_column(&self, table: &str, column: &str) -> bool {
        self.tables.get(table).is_some_and(|c| c.contains(column))
    }

    /// The tables this exporter reads that are absent, in `TABLES` order.
    pub fn missing_tables(&self) -> Vec<&'static str> {
        TABLES
            .iter()
            .copied()
            .filter(|t| !self.has_table(t))
            .collect()
    }

    /// Feature flags for the self-metric `litellm_exporter_schema_feature`.
    pub fn features(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = TABLES
            .iter()
            .map(|t| (format!("table:{t}"), self.has_table(t)))
            .collect();
        for c in OPTIONAL_SPEND_LOG_COLUMNS {
            out.push((
                format!("column:LiteLLM_SpendLogs.{c}"),
                self.has_column("LiteLLM_SpendLogs", c),
            ));
        }
        out
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Schema {
        let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (t, c) in pairs {
            tables
                .entry(t.to_string())
                .or_default()
                .insert(c.to_string());
        }
        Schema { tables }
    }
}
