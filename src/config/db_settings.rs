//! LiteLLM's settings stored in its own database: the `general_settings` and `litellm_settings`
//! rows of `LiteLLM_Config` (edited in LiteLLM's admin UI), read through the view
//! `sql/setup/readonly_role.sql` creates, and merged over the config file's with LiteLLM 1.110.2's
//! rule. Owns that rule, the read (at start, after connecting, and on SIGHUP) and what is said
//! about it. Nothing here ever logs, shows or returns a stored value: only key names that are
//! the exporter's own (a fixed list), so nothing typed into LiteLLM's UI reaches a log line.
//!
//! LiteLLM 1.110.2's rule (litellm/proxy/proxy_server.py `get_config`, `_update_config_from_db`,
//! `add_deployment_locked`; litellm/proxy/config_resolvers/settings_rules.py `resolve`):
//! - The rows are read only when `store_model_in_db` is on: the proxy's flag or the
//!   `STORE_MODEL_IN_DB` environment variable, `general_settings.store_model_in_db` in the file,
//!   or `store_model_in_db: true` in the stored `general_settings` row itself (read at start to
//!   break the chicken-and-egg).
//! - Per key, the file wins: a key the file sets (even to null) is the file's, whatever the
//!   database holds. A stored null counts as absent. A value is taken whole (no deep merge).
//! - A stored `general_settings` key is applied only if LiteLLM manages it from the database
//!   (`ConfigGeneralSettings`' fields and the cleanup schedule): of the exporter's keys,
//!   `use_spend_logs_partitioning` and `maximum_spend_logs_retention_period`. LiteLLM ignores a
//!   stored `proxy_batch_write_at`, `disable_spend_logs` or `disable_error_logs` (it says so), and
//!   a stored `database_url` cannot choose the database it was read from.
//! - The `litellm_settings` row enters LiteLLM's config state, but LiteLLM configures its
//!   Prometheus callback from the file while starting, before it connects to the database, and
//!   later copies only a fixed list of stored keys onto its live settings
//!   (`LITELLM_SETTINGS_SAFE_DB_OVERRIDES`, none of them a Prometheus key). A stored Prometheus
//!   key or `disable_end_user_cost_tracking` therefore never changes LiteLLM's own `/metrics`,
//!   and the exporter, which must serve the same series, does not apply it either (it says so).

use std::collections::BTreeSet;

use serde_json::Value;
use tracing::{debug, info, warn};

use super::{Config, GeneralSettings};
use crate::db::DbError;

/// The view the setup script creates over the two settings rows.
pub const VIEW: &str = "litellm_exporter_settings";

/// The `general_settings` keys the exporter takes from the stored row (LiteLLM applies them).
const APPLIED_GENERAL: &[&str] = &[
    "use_spend_logs_partitioning",
    "maximum_spend_logs_retention_period",
];

/// What the file (and the environment) say, kept in `Config` for the merge.
#[derive(Debug, Clone, Default)]
pub struct FileSide {
    /// `section.key` for every key the file sets under `general_settings` and `litellm_settings`
    /// (null included): the file owns them.
    pub owned: BTreeSet<String>,
    /// Where `store_model_in_db` was turned on outside the database (None: it was not).
    pub store_model_in_db: Option<&'static str>,
    /// The file's `use_spend_logs_partitioning`.
    pub partitioning: Option<bool>,
    /// Whether a state file is configured (a stored retention period is worth a warning without).
    pub state_file: bool,
}

/// The two stored rows, as read (None: no row, or a row whose value is NULL).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub general: Option<Value>,
    pub litellm: Option<Value>,
}

/// The merge of the stored rows over the file, by LiteLLM's rule: only key names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Whether `store_model_in_db` is on, and where from (None: off; the rows are ignored).
    pub gate: Option<&'static str>,
    /// The effective `use_spend_logs_partitioning`.
    pub partitioning: Option<bool>,
    /// Stored keys that apply (`section.key`).
    pub applied: Vec<String>,
    /// Stored keys the file also sets: the file's value applies.
    pub file_owned: Vec<String>,
    /// Stored keys of the exporter's that LiteLLM does not apply from the database.
    pub not_applied: Vec<String>,
    /// Stored keys whose value is not valid for the setting (ignored).
    pub invalid: Vec<String>,
    /// Rows stored as something other than a JSON object (LiteLLM ignores them whole).
    pub unreadable: Vec<&'static str>,
    /// A stored retention period applies while no state file is configured.
    pub retention_without_state: bool,
}

/// `true`, or the text `true` in any case: what LiteLLM takes for on (`str_to_bool`).
fn is_on(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The keys of a stored row whose value is not null (LiteLLM: a stored null is absent).
fn present(row: &serde_json::Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    row.iter().filter(|(_, v)| !v.is_null())
}

/// What a valid value of an applied key looks like, for a message that cannot show the value.
fn expected(key: &str) -> &'static str {
    match key {
        "use_spend_logs_partitioning" => "a boolean",
        _ => "a string such as 30d",
    }
}

/// Merges the stored rows over the file by LiteLLM 1.110.2's rule (see the module comment).
pub fn merge(file: &FileSide, rows: &Rows) -> Outcome {
    let mut out = Outcome {
        partitioning: file.partitioning,
        ..Outcome::default()
    };
    let object = |name: &'static str, v: &Option<Value>, out: &mut Outcome| match v {
        None => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            out.unreadable.push(name);
            None
        }
    };
    let general = object("general_settings", &rows.general, &mut out);
    let litellm = object("litellm_settings", &rows.litellm, &mut out);
    let stored_gate = general
        .as_ref()
        .and_then(|g| g.get("store_model_in_db"))
        .is_some_and(is_on);
    out.gate = file
        .store_model_in_db
        .or(stored_gate.then_some("the stored general_settings"));
    if out.gate.is_none() {
        return out;
    }
    let exporter_keys = super::GENERAL_KEYS
        .iter()
        .map(|k| ("general_settings", *k))
        .chain(super::LITELLM_KEYS.iter().map(|k| ("litellm_settings", *k)));
    for (section, key) in exporter_keys {
        let row = if section == "general_settings" {
            &general
        } else {
            &litellm
        };
        let Some(value) = row
            .as_ref()
            .and_then(|r| present(r).find(|(k, _)| k.as_str() == key).map(|(_, v)| v))
        else {
            continue;
        };
        let name = format!("{section}.{key}");
        if file.owned.contains(&name) {
            out.file_owned.push(name);
            continue;
        }
        if section != "general_settings" || !APPLIED_GENERAL.contains(&key) {
            out.not_applied.push(name);
            continue;
        }
        // The same validation as the file's key (serde, one key alone), without its message:
        // serde's text quotes the value.
        let one = serde_json::Map::from_iter([(key.to_string(), value.clone())]);
        match serde_json::from_value::<GeneralSettings>(Value::Object(one)) {
            Ok(g) => {
                if key == "use_spend_logs_partitioning" {
                    out.partitioning = g.use_spend_logs_partitioning;
                } else {
                    out.retention_without_state = !file.state_file;
                }
                out.applied.push(name);
            }
            Err(_) => out.invalid.push(name),
        }
    }
    out
}

/// The read and what it last gave, owned by the refresh loop.
#[derive(Debug)]
pub struct DbSettings {
    /// A read is due: at start, and after SIGHUP.
    due: bool,
    /// Whether the missing view was already reported (once per process).
    said_missing: bool,
    last: Option<Outcome>,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            due: true,
            said_missing: false,
            last: None,
        }
    }
}

impl DbSettings {
    /// SIGHUP: read the rows again at the next refresh.
    pub fn reload(&mut self) {
        self.due = true;
    }

    /// Reads the rows when due, in a read-only transaction of its own, and applies them to
    /// `cfg`. A missing or ungranted view is said once and leaves the file's settings; any other
    /// error is the refresh's (the next one tries again).
    pub async fn refresh(
        &mut self,
        client: &mut deadpool_postgres::Object,
        cfg: &mut Config,
    ) -> Result<(), DbError> {
        if !self.due {
            return Ok(());
        }
        let rows = match read(client).await {
            Ok(r) => r,
            Err(e) if is_missing(&e) => {
                self.due = false;
                if !self.said_missing {
                    self.said_missing = true;
                    let why = "LiteLLM's stored settings are not read: the view litellm_exporter_settings is missing or not granted to this role. Run sql/setup/readonly_role.sql (README, \"A read-only role\") to let the exporter read the general_settings and litellm_settings rows of LiteLLM_Config; until then the config file alone applies.";
                    if cfg.db_settings.store_model_in_db.is_some() {
                        warn!("{why}");
                    } else {
                        info!("{why}");
                    }
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.due = false;
        let out = merge(&cfg.db_settings, &rows);
        if self.last.as_ref() == Some(&out) {
            debug!("LiteLLM_Config: the stored settings are unchanged.");
            return Ok(());
        }
        say(&out);
        cfg.spend_logs_partitioning = out.partitioning;
        self.last = Some(out);
        Ok(())
    }
}

/// Undefined table (no view) or insufficient privilege (not granted).
fn is_missing(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INSUFFICIENT_PRIVILEGE)
}

async fn read(client: &mut deadpool_postgres::Object) -> Result<Rows, tokio_postgres::Error> {
    let tx = crate::db::read_tx(client).await?;
    let found = tx.query(crate::sql::LITELLM_SETTINGS, &[]).await?;
    tx.commit().await?;
    let mut rows = Rows::default();
    for r in found {
        let name: String = r.try_get("param_name")?;
        let value: Option<Value> = r.try_get("param_value")?;
        match name.as_str() {
            "general_settings" => rows.general = value,
            "litellm_settings" => rows.litellm = value,
            _ => {}
        }
    }
    Ok(rows)
}

/// Logs an outcome: key names and where they come from, never a value.
fn say(out: &Outcome) {
    for row in &out.unreadable {
        warn!("LiteLLM_Config {row} is stored as something other than a JSON object; LiteLLM ignores every key of it, and so does the exporter.");
    }
    let Some(gate) = out.gate else {
        info!("LiteLLM_Config: store_model_in_db is off (not in the config file's general_settings, STORE_MODEL_IN_DB or the stored general_settings), so LiteLLM ignores its stored settings, and so does the exporter.");
        return;
    };
    let list = |v: &[String]| v.join(", ");
    if out.applied.is_empty() {
        info!(
            store_model_in_db = gate,
            "LiteLLM_Config: no stored setting applies to the exporter."
        );
    } else {
        info!(
            store_model_in_db = gate,
            "LiteLLM_Config: applied over the config file (as LiteLLM does): {}.",
            list(&out.applied)
        );
    }
    if !out.file_owned.is_empty() {
        info!("LiteLLM_Config: also stored, but set in the config file, which wins (as in LiteLLM); the stored values are ignored: {}.", list(&out.file_owned));
    }
    if !out.not_applied.is_empty() {
        warn!("LiteLLM_Config: stored but not applied, because LiteLLM 1.110.2 does not apply them from its database either (it configures its Prometheus metrics from the config file while starting, before it reads the database; it ignores a stored proxy_batch_write_at, disable_spend_logs and disable_error_logs; a stored database_url cannot choose the database it is read from). Set them in the config file: {}.", list(&out.not_applied));
    }
    for name in &out.invalid {
        let key = name.rsplit('.').next().unwrap_or(name);
        warn!("LiteLLM_Config {name}: the stored value is not {} (the value is not shown); ignored, the config file's setting applies.", expected(key));
    }
    if out.retention_without_state {
        warn!("LiteLLM_Config general_settings.maximum_spend_logs_retention_period: LiteLLM deletes older spend-log rows, and without --state.file (exporter.state_file) a restart rebuilds the counters from the rows that remain, so they drop.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(owned: &[&str], gate: bool) -> FileSide {
        FileSide {
            owned: owned.iter().map(|s| s.to_string()).collect(),
            store_model_in_db: gate.then_some("the config file"),
            partitioning: Some(false),
            state_file: false,
        }
    }

    #[test]
    fn stored_keys_apply_only_where_the_file_is_silent() {
        let rows = Rows {
            general: Some(json!({
                "use_spend_logs_partitioning": true,
                "maximum_spend_logs_retention_period": "30d",
                "master_key": "sk-not-ours",
                "proxy_batch_write_at": 60,
            })),
            litellm: Some(json!({"prometheus_exclude_labels": ["team"], "callbacks": ["x"]})),
        };
        let out = merge(&file(&[], true), &rows);
        assert_eq!(out.partitioning, Some(true));
        assert_eq!(
            out.applied,
            [
                "general_settings.use_spend_logs_partitioning",
                "general_settings.maximum_spend_logs_retention_period"
            ]
        );
        assert!(out.retention_without_state);
        assert_eq!(
            out.not_applied,
            [
                "general_settings.proxy_batch_write_at",
                "litellm_settings.prometheus_exclude_labels"
            ]
        );
        // The file owns a key it sets, whatever is stored.
        let out = merge(
            &file(&["general_settings.use_spend_logs_partitioning"], true),
            &rows,
        );
        assert_eq!(out.partitioning, Some(false));
        assert_eq!(
            out.file_owned,
            ["general_settings.use_spend_logs_partitioning"]
        );
    }

    #[test]
    fn store_model_in_db_gates_the_rows() {
        let rows = Rows {
            general: Some(json!({"use_spend_logs_partitioning": true})),
            litellm: None,
        };
        let out = merge(&file(&[], false), &rows);
        assert_eq!((out.gate, out.partitioning), (None, Some(false)));
        assert!(out.applied.is_empty());
        // The stored row can turn it on itself, as a boolean or LiteLLM's "true" text.
        for on in [json!(true), json!("True")] {
            let rows = Rows {
                general: Some(
                    json!({"use_spend_logs_partitioning": true, "store_model_in_db": on}),
                ),
                litellm: None,
            };
            let out = merge(&file(&[], false), &rows);
            assert_eq!(out.gate, Some("the stored general_settings"));
            assert_eq!(out.partitioning, Some(true));
        }
    }

    #[test]
    fn nulls_invalid_values_and_non_objects() {
        let rows = Rows {
            general: Some(json!({
                "use_spend_logs_partitioning": "sk-secret-value",
                "maximum_spend_logs_retention_period": null,
            })),
            litellm: Some(json!("not an object")),
        };
        let out = merge(&file(&[], true), &rows);
        assert_eq!(
            out.invalid,
            ["general_settings.use_spend_logs_partitioning"]
        );
        assert!(out.applied.is_empty() && !out.retention_without_state);
        assert_eq!(out.unreadable, ["litellm_settings"]);
        assert_eq!(out.partitioning, Some(false));
        // Nothing the outcome holds carries a stored value.
        assert!(!format!("{out:?}").contains("sk-secret"));
    }
}
