//! Flags, environment and the optional YAML file, turned into one validated, immutable `Config`.
//! Precedence: a flag (or its environment variable) over the file over the built-in default.
//! Every rejection is one line naming the setting; `main` exits with code 2 on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::catalogue::{DEFAULT_BUCKETS, LATENCY_BUCKETS};
use crate::cli::{RunArgs, DEFAULT_PORT};
use crate::db::{self, PoolSettings, Target, MAX_POOL_SIZE};
use crate::entities::{EntityConfig, Sources};
use crate::ledger::read::{Extra, Identity};
use crate::ledger::tail::TailConfig;
use crate::ledger::values::Thresholds;
use crate::selection::{MetricsGroup, Selection};

pub mod db_settings;
mod litellm_keys;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("config file {path}: {msg}")]
    File { path: String, msg: String },
    /// One line per problem, each naming the file position.
    #[error("{}", .0.join("\n"))]
    Findings(Vec<String>),
    #[error(transparent)]
    Url(#[from] db::UrlError),
    #[error(transparent)]
    Web(#[from] crate::web_config::WebConfigError),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// The `litellm_settings` keys the exporter reads (LiteLLM's own names and meanings). Every other
/// LiteLLM key is accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LitellmSettings {
    pub prometheus_metrics_config: Option<Vec<MetricsGroup>>,
    #[serde(default)]
    pub prometheus_exclude_metrics: Vec<String>,
    #[serde(default)]
    pub prometheus_exclude_labels: Vec<String>,
    pub enable_end_user_cost_tracking_prometheus_only: Option<bool>,
    pub disable_end_user_cost_tracking: Option<bool>,
    pub prometheus_user_budget_label_include_email_alias: Option<bool>,
    pub prometheus_latency_buckets: Option<Vec<f64>>,
    #[serde(default)]
    pub custom_prometheus_metadata_labels: Vec<String>,
    #[serde(default)]
    pub custom_prometheus_tags: Vec<String>,
    pub prometheus_emit_stream_label: Option<bool>,
    pub prometheus_metrics_max_series_per_metric: Option<usize>,
    pub prometheus_end_user_metrics_max_series_per_metric: Option<usize>,
    pub prometheus_emit_rate_limit_labels: Option<bool>,
    pub prometheus_emit_input_sequence_length_label: Option<bool>,
    pub prometheus_deployment_and_latency_caller_identity: Option<String>,
    pub prometheus_initialize_budget_metrics: Option<bool>,
    pub prometheus_metrics_ttl_seconds: Option<f64>,
    pub prometheus_metrics_cleanup_interval_seconds: Option<f64>,
    pub prometheus_end_user_metrics_ttl_seconds: Option<f64>,
    pub prometheus_end_user_metrics_cleanup_interval_seconds: Option<f64>,
}

/// The fields of `LitellmSettings`: the Prometheus keys of LiteLLM 1.110.2
/// (litellm/integrations/prometheus.py, litellm/__init__.py) and `disable_end_user_cost_tracking`.
const LITELLM_KEYS: &[&str] = &[
    "prometheus_metrics_config",
    "prometheus_exclude_metrics",
    "prometheus_exclude_labels",
    "enable_end_user_cost_tracking_prometheus_only",
    "disable_end_user_cost_tracking",
    "prometheus_user_budget_label_include_email_alias",
    "prometheus_latency_buckets",
    "custom_prometheus_metadata_labels",
    "custom_prometheus_tags",
    "prometheus_emit_stream_label",
    "prometheus_metrics_max_series_per_metric",
    "prometheus_end_user_metrics_max_series_per_metric",
    "prometheus_emit_rate_limit_labels",
    "prometheus_emit_input_sequence_length_label",
    "prometheus_deployment_and_latency_caller_identity",
    "prometheus_initialize_budget_metrics",
    "prometheus_metrics_ttl_seconds",
    "prometheus_metrics_cleanup_interval_seconds",
    "prometheus_end_user_metrics_ttl_seconds",
    "prometheus_end_user_metrics_cleanup_interval_seconds",
];

/// LiteLLM's default `prometheus_end_user_metrics_max_series_per_metric`.
pub const END_USER_MAX_SERIES: usize = 10_000;

/// The random 0-5 s LiteLLM adds to every `general_settings.proxy_batch_write_at` interval
/// (litellm/proxy/proxy_server.py; the interval defaults to 10 s): spend-log rows reach the
/// database up to their sum after the request.
pub const PROXY_BATCH_JITTER: u64 = 5;

/// The `general_settings` keys that concern the exporter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralSettings {
    /// The proxy's database; may be `os.environ/NAME`.
    pub database_url: Option<String>,
    pub use_spend_logs_partitioning: Option<bool>,
    pub maximum_spend_logs_retention_period: Option<String>,
    pub proxy_batch_write_at: Option<u64>,
    pub disable_spend_logs: Option<bool>,
    pub disable_error_logs: Option<bool>,
}

const GENERAL_KEYS: &[&str] = &[
    "database_url",
    "use_spend_logs_partitioning",
    "maximum_spend_logs_retention_period",
    "proxy_batch_write_at",
    "disable_spend_logs",
    "disable_error_logs",
];

/// Labels that identify people; off by default, as in LiteLLM.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSettings {
    pub user_email: Option<bool>,
    pub client_ip: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterSettings {
    pub listen_address: Option<String>,
    pub telemetry_path: Option<String>,
    pub poll_interval: Option<String>,
    pub state_file: Option<PathBuf>,
    pub lateness: Option<String>,
    pub recent_window: Option<String>,
    pub window_growth: Option<u32>,
    pub statement_timeout: Option<String>,
    pub pool_size: Option<usize>,
    pub memory_budget: Option<String>,
    #[serde(default)]
    pub labels: LabelSettings,
    #[serde(default)]
    pub sources: Sources,
}

const EXPORTER_KEYS: &[&str] = &[
    "listen_address",
    "telemetry_path",
    "poll_interval",
    "state_file",
    "lateness",
    "recent_window",
    "window_growth",
    "statement_timeout",
    "pool_size",
    "memory_budget",
    "labels",
    "sources",
];

/// The file: the exporter's own `exporter:` section and LiteLLM's proxy config (the proxy's
/// `proxy_config.yaml` can be given as it is). Problems are collected, not returned at the first,
/// so that `check-config` lists them all.
#[derive(Debug, Default)]
pub struct FileConfig {
    pub litellm_settings: LitellmSettings,
    pub general_settings: GeneralSettings,
    pub exporter: ExporterSettings,
    /// `environment_variables`: LiteLLM puts them into its environment before resolving
    /// `os.environ/NAME`, so they win over the process environment.
    pub environment: BTreeMap<String, String>,
    /// Where `litellm_settings.prometheus_end_user_metrics_max_series_per_metric: null` turns
    /// LiteLLM's end-user cap off (absent means LiteLLM's default).
    pub end_user_cap_off: bool,
    /// `section.key` for every key set under `general_settings` and `litellm_settings`: the file
    /// owns them over LiteLLM's stored settings (`db_settings`).
    pub owned: std::collections::BTreeSet<String>,
    /// `general_settings.store_model_in_db` is on (LiteLLM then overlays its stored settings).
    pub store_model_in_db: bool,
    /// `file:line:column: ...` lines.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// For `check-config`: the keys read, and the LiteLLM keys that do not concern the exporter.
    pub taken: Vec<String>,
    pub ignored: Vec<String>,
}

/// Finds keys in the file text, for `file:line:column` (serde_yaml's values carry no positions).
pub struct Locator<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

impl Locator<'_> {
    /// The position of the key at `keys` (a path of nested block-mapping keys). Falls back to the
    /// first occurrence of the last key anywhere (flow mappings), then to the parent's position.
    pub fn at(&self, keys: &[&str]) -> String {
        match key_line(self.text, keys) {
            Some((l, c)) => format!("{}:{l}:{c}", self.path),
            None => match keys.split_last() {
                Some((last, rest)) => {
                    let p = crate::selection::position(self.path, self.text, &format!("{last}:"));
                    if p != self.path || rest.is_empty() {
                        p
                    } else {
                        self.at(rest)
                    }
                }
                None => self.path.to_string(),
            },
        }
    }
}

/// Line and column (1-based) of a nested block-mapping key, following indentation.
fn key_line(text: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for key in keys {
        found = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let body = line.trim_start();
            let indent = line.len() - body.len();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            match parent_indent {
                Some(p) if indent <= p => break, // the parent's block ended
                None if indent > 0 => continue,  // a top-level key starts its line
                _ => {}
            }
            let bare = body.trim_start_matches(['"', '\'']);
            if let Some(rest) = bare.strip_prefix(key) {
                if rest.trim_start_matches(['"', '\'']).starts_with(':') {
                    found = Some((i, indent));
                    break;
                }
            }
        }
        let (i, indent) = found?;
        from = i + 1;
        parent_indent = Some(indent);
    }
    found.map(|(i, indent)| (i + 1, indent + 1))
}

/// Sorts `file:line:column: ...` lines by position; lines without one (flags) go last.
pub fn sort_by_position(lines: &mut [String]) {
    fn key(l: &str) -> (usize, usize) {
        let mut parts = l.split(':').skip(1);
        let line = parts.next().and_then(|x| x.trim().parse().ok());
        let col = parts.next().and_then(|x| x.trim().parse().ok());
        match (line, col) {
            (Some(l), Some(c)) => (l, c),
            (Some(l), None) => (l, 0),
            _ => (usize::MAX, 0),
        }
    }
    lines.sort_by_key(|l| key(l));
}

/// A serde_yaml error as `file:line:column: message`.
fn yaml_error(path: &str, e: &serde_yaml::Error) -> String {
    let msg = suggest(&e.to_string());
    match e.location() {
        Some(l) => {
            // serde_yaml appends " at line L column C"; the prefix says it already.
            let short = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            format!("{path}:{}:{}: {short}", l.line(), l.column())
        }
        None => format!("{path}: {msg}"),
    }
}

/// A short description of an ignored section, e.g. `model_list (3 entries)`.
fn describe(key: &str, v: &Value) -> String {
    match v {
        Value::Sequence(s) => format!("{key} ({} entries)", s.len()),
        Value::Mapping(m) => format!("{key} ({} keys)", m.len()),
        _ => key.to_string(),
    }
}

/// A section's keys: each known one deserialized alone (so a bad value is named by its own
/// position and the others still count), the rest returned with their positions.
fn section<T: DeserializeOwned + Default>(
    loc: &Locator,
    name: &str,
    value: &Value,
    known: &[&str],
    errors: &mut Vec<String>,
) -> (T, Vec<(String, String)>, Vec<String>) {
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => return (T::default(), Vec::new(), Vec::new()),
        _ => {
            errors.push(format!("{}: {name} must be a mapping", loc.at(&[name])));
            return (T::default(), Vec::new(), Vec::new());
        }
    };
    let mut good = Mapping::new();
    let mut unknown = Vec::new();
    let mut present = Vec::new();
    for (k, v) in map {
        let key = match k {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let pos = loc.at(&[name, &key]);
        if !known.contains(&key.as_str()) {
            unknown.push((key, pos));
            continue;
        }
        let one: Mapping = [(k.clone(), v.clone())].into_iter().collect();
        match serde_yaml::from_value::<T>(Value::Mapping(one)) {
            Ok(_) => {
                good.insert(k.clone(), v.clone());
                present.push(key);
            }
            Err(e) => errors.push(format!("{pos}: {name}.{key}: {}", suggest(&e.to_string()))),
        }
    }
    // Each key deserialized alone, so all of them together do too.
    let parsed = serde_yaml::from_value(Value::Mapping(good)).unwrap_or_default();
    (parsed, unknown, present)
}

/// The exporter's own top-level sections.
const OUR_TOP_LEVEL: &[&str] = &["exporter", "litellm_settings", "general_settings"];

impl FileConfig {
    /// Reads the file. Err only when it cannot be read or is not YAML; every other problem is
    /// in `errors`/`warnings`, in line order. Also returns its text, for pointing at entries.
    pub fn load(path: &Path) -> Result<(FileConfig, String), ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        let root: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_yaml::from_str(&text)
                .map_err(|e| ConfigError::Findings(vec![yaml_error(&p, &e)]))?
        };
        let root = match root {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err(ConfigError::Findings(vec![format!(
                    "{p}:1:1: the file must be a mapping of sections (exporter:, litellm_settings:, ...)"
                )]))
            }
        };
        let loc = Locator {
            path: &p,
            text: &text,
        };
        let mut f = FileConfig::default();
        for (k, v) in &root {
            let key = k.as_str().unwrap_or_default();
            let pos = loc.at(&[key]);
            match key {
                "exporter" => f.read_exporter(&loc, key, v),
                "litellm_settings" => f.read_litellm_settings(&loc, key, v),
                "general_settings" => f.read_general_settings(&loc, key, v),
                "environment_variables" => f.read_environment(&pos, v),
                k if litellm_keys::TOP_LEVEL.contains(&k) => f.ignored.push(describe(k, v)),
                k => f.unknown_section(&pos, k),
            }
        }
        f.warnings.extend(f.litellm_warnings(&loc));
        f.warnings.extend(f.general_warnings(&loc));
        sort_by_position(&mut f.errors);
        sort_by_position(&mut f.warnings);
        Ok((f, text))
    }

    /// The `exporter` section: every key the exporter reads, each checked alone.
    fn read_exporter(&mut self, loc: &Locator, key: &str, v: &Value) {
        let (s, unknown, present) =
            section::<ExporterSettings>(loc, key, v, EXPORTER_KEYS, &mut self.errors);
        self.exporter = s;
        self.taken
            .extend(present.iter().map(|k| format!("exporter.{k}")));
        for (u, at) in unknown {
            let hint = crate::selection::closest(&u, EXPORTER_KEYS.iter().copied())
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            self.errors
                .push(format!("{at}: unknown key exporter.{u}{hint}"));
        }
    }

    /// `litellm_settings`: the Prometheus keys the exporter reads; LiteLLM's other keys are
    /// ignored, anything else is a typo (an error when it is close to a key the exporter reads).
    fn read_litellm_settings(&mut self, loc: &Locator, key: &str, v: &Value) {
        let (s, unknown, present) =
            section::<LitellmSettings>(loc, key, v, LITELLM_KEYS, &mut self.errors);
        self.litellm_settings = s;
        self.taken
            .extend(present.iter().map(|k| format!("litellm_settings.{k}")));
        self.owned.extend(
            present
                .iter()
                .chain(unknown.iter().map(|(u, _)| u))
                .map(|k| format!("litellm_settings.{k}")),
        );
        // null turns LiteLLM's end-user cap off; serde reads it as absent.
        self.end_user_cap_off = v
            .get("prometheus_end_user_metrics_max_series_per_metric")
            .is_some_and(Value::is_null);
        let mut ignored = Vec::new();
        for (u, at) in unknown {
            if litellm_keys::LITELLM_SETTINGS.contains(&u.as_str()) {
                ignored.push(u);
            } else if let Some(c) = crate::selection::closest(&u, LITELLM_KEYS.iter().copied()) {
                // Most likely a misspelt Prometheus key: it would silently change
                // what is exported.
                self.errors.push(format!(
                    "{at}: unknown key litellm_settings.{u} (did you mean {c}?)"
                ));
            } else {
                let hint =
                    crate::selection::closest(&u, litellm_keys::LITELLM_SETTINGS.iter().copied())
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_default();
                self.warnings.push(format!(
                    "{at}: litellm_settings.{u} is not a LiteLLM 1.110.2 setting{hint}; ignored"
                ));
            }
        }
        if !ignored.is_empty() {
            self.ignored
                .push(format!("litellm_settings: {}", ignored.join(", ")));
        }
    }

    /// `general_settings`: the keys the exporter reads, `store_model_in_db`, and LiteLLM's
    /// others (ignored; a near miss is a warning, as LiteLLM ignores unknown keys).
    fn read_general_settings(&mut self, loc: &Locator, key: &str, v: &Value) {
        let (s, unknown, present) =
            section::<GeneralSettings>(loc, key, v, GENERAL_KEYS, &mut self.errors);
        self.general_settings = s;
        self.taken
            .extend(present.iter().map(|k| format!("general_settings.{k}")));
        self.owned.extend(
            present
                .iter()
                .chain(unknown.iter().map(|(u, _)| u))
                .map(|k| format!("general_settings.{k}")),
        );
        let mut ignored = Vec::new();
        for (u, at) in unknown {
            if u == "store_model_in_db" {
                // LiteLLM's own rule: true, or the text "true" in any case.
                self.store_model_in_db = match v.get("store_model_in_db") {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
                    _ => false,
                };
                self.taken.push("general_settings.store_model_in_db".into());
            } else if litellm_keys::GENERAL_SETTINGS.contains(&u.as_str()) {
                ignored.push(u);
            } else {
                // LiteLLM ignores unknown general_settings keys; so does the
                // exporter, but a near miss of a key it reads is worth saying.
                let hint =
                    crate::selection::closest(&u, litellm_keys::GENERAL_SETTINGS.iter().copied())
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_default();
                self.warnings.push(format!(
                    "{at}: general_settings.{u} is not a LiteLLM 1.110.2 setting{hint}; ignored"
                ));
            }
        }
        if !ignored.is_empty() {
            self.ignored
                .push(format!("general_settings: {}", ignored.join(", ")));
        }
    }

    /// `environment_variables`: what LiteLLM puts into its environment, for `os.environ/`.
    fn read_environment(&mut self, pos: &str, v: &Value) {
        match v {
            Value::Mapping(m) => {
                for (name, value) in m {
                    let (Some(name), Some(value)) = (
                        name.as_str(),
                        match value {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            Value::Bool(b) => Some(b.to_string()),
                            _ => None,
                        },
                    ) else {
                        continue;
                    };
                    self.environment.insert(name.to_string(), value);
                }
                self.taken.push(format!(
                    "environment_variables ({} names, for os.environ/ references)",
                    self.environment.len()
                ));
            }
            Value::Null => {}
            _ => self
                .errors
                .push(format!("{pos}: environment_variables must be a mapping")),
        }
    }

    /// A top-level key that is neither the exporter's nor LiteLLM's.
    fn unknown_section(&mut self, pos: &str, k: &str) {
        let all = OUR_TOP_LEVEL.iter().chain(litellm_keys::TOP_LEVEL).copied();
        // A near miss is a typo that would drop a whole section: an error. Anything
        // else may be a newer LiteLLM's section: a warning.
        match crate::selection::closest(k, all) {
            Some(c) => self
                .errors
                .push(format!("{pos}: unknown section {k} (did you mean {c}?)")),
            None => self.warnings.push(format!(
                "{pos}: {k} is neither the exporter's nor a LiteLLM 1.110.2 section; ignored"
            )),
        }
    }

    /// Is end-user tracking on (LiteLLM's rule: enabled for Prometheus and not disabled)?
    pub fn end_user(&self) -> bool {
        let ls = &self.litellm_settings;
        ls.enable_end_user_cost_tracking_prometheus_only == Some(true)
            && ls.disable_end_user_cost_tracking != Some(true)
    }

    /// LiteLLM Prometheus settings the database cannot supply: said, not silently dropped.
    fn litellm_warnings(&self, loc: &Locator) -> Vec<String> {
        let ls = &self.litellm_settings;
        let at = |k: &str| loc.at(&["litellm_settings", k]);
        let mut w = Vec::new();
        if ls.prometheus_emit_rate_limit_labels == Some(true) {
            w.push(format!("{}: prometheus_emit_rate_limit_labels: the rate_limit_category and rate_limit_type labels are not added: LiteLLM takes them from the rate limiter's exception, and the spend log does not store which limit refused a request", at("prometheus_emit_rate_limit_labels")));
        }
        if ls.prometheus_emit_input_sequence_length_label == Some(true) {
            w.push(format!("{}: prometheus_emit_input_sequence_length_label: the input_sequence_length label is not added to the latency histograms: this exporter does not derive it (yet) from the stored prompt_tokens", at("prometheus_emit_input_sequence_length_label")));
        }
        match ls.prometheus_deployment_and_latency_caller_identity.as_deref() {
            None | Some("api_key_alias") => {}
            Some(m @ ("user_email" | "both")) => w.push(format!("{}: prometheus_deployment_and_latency_caller_identity: {m}: the deployment and latency families keep LiteLLM's default labels (api_key_alias); the exporter does not move user_email into them", at("prometheus_deployment_and_latency_caller_identity"))),
            // LiteLLM refuses to start on any other value; the error is in `build`.
            Some(_) => {}
        }
        if ls.prometheus_initialize_budget_metrics == Some(false) {
            w.push(format!("{}: prometheus_initialize_budget_metrics: false: the exporter reads budgets from the tables and exports every entity's at every refresh, as LiteLLM does with true (switch a table off with exporter.sources)", at("prometheus_initialize_budget_metrics")));
        }
        let no_expiry = "series are never expired: they come from the database, and a counter removed and re-created would restart from zero; bound them with prometheus_metrics_max_series_per_metric";
        for k in [
            "prometheus_metrics_ttl_seconds",
            "prometheus_metrics_cleanup_interval_seconds",
            "prometheus_end_user_metrics_ttl_seconds",
            "prometheus_end_user_metrics_cleanup_interval_seconds",
        ] {
            let set = match k {
                "prometheus_metrics_ttl_seconds" => ls.prometheus_metrics_ttl_seconds,
                "prometheus_metrics_cleanup_interval_seconds" => {
                    ls.prometheus_metrics_cleanup_interval_seconds
                }
                "prometheus_end_user_metrics_ttl_seconds" => {
                    ls.prometheus_end_user_metrics_ttl_seconds
                }
                _ => ls.prometheus_end_user_metrics_cleanup_interval_seconds,
            };
            if set.is_some() {
                w.push(format!("{}: {k}: {no_expiry}", at(k)));
            }
        }
        if ls.enable_end_user_cost_tracking_prometheus_only == Some(true)
            && ls.disable_end_user_cost_tracking == Some(true)
        {
            w.push(format!("{}: disable_end_user_cost_tracking wins over enable_end_user_cost_tracking_prometheus_only (as in LiteLLM): end_user is \"None\" and customer budgets are not exported", at("disable_end_user_cost_tracking")));
        }
        if self.end_user() {
            let cap = self.end_user_cap();
            let by = if ls
                .prometheus_end_user_metrics_max_series_per_metric
                .is_some()
            {
                "prometheus_end_user_metrics_max_series_per_metric"
            } else {
                "LiteLLM's default prometheus_end_user_metrics_max_series_per_metric"
            };
            if let Some(cap) = cap {
                w.push(format!("{}: end-user tracking is on: {by} ({cap}) caps every family at {cap} series (the exporter has one cap per family, also for families without end_user); series beyond it fold into \"other\" instead of being evicted, so totals stay exact", at("enable_end_user_cost_tracking_prometheus_only")));
            }
        }
        w
    }

    /// The end-user series cap when end-user tracking is on (None: off).
    pub fn end_user_cap(&self) -> Option<usize> {
        if !self.end_user() || self.end_user_cap_off {
            return None;
        }
        Some(
            self.litellm_settings
                .prometheus_end_user_metrics_max_series_per_metric
                .unwrap_or(END_USER_MAX_SERIES),
        )
    }

    /// What `general_settings` means for what the exporter can see.
    fn general_warnings(&self, loc: &Locator) -> Vec<String> {
        let gs = &self.general_settings;
        let at = |k: &str| loc.at(&["general_settings", k]);
        let mut w = Vec::new();
        if gs.disable_spend_logs == Some(true) {
            w.push(format!("{}: disable_spend_logs: true: LiteLLM writes no spend-log rows, so every spend-log family (requests, spend, tokens, latency, deployments) stays empty; only the budget gauges have data", at("disable_spend_logs")));
        }
        if gs.disable_error_logs == Some(true) {
            w.push(format!("{}: disable_error_logs: true: LiteLLM stores no failed requests, so litellm_proxy_failed_requests_metric, litellm_llm_api_failed_requests_metric and litellm_deployment_failure_responses read zero and the request totals count successes only", at("disable_error_logs")));
        }
        w
    }

    /// `general_settings.database_url` with `os.environ/NAME` resolved as LiteLLM does (the file's
    /// `environment_variables`, then the process environment). Err names the variable.
    pub fn database_url(&self) -> Option<Result<String, String>> {
        let raw = self.general_settings.database_url.as_deref()?;
        Some(match raw.strip_prefix("os.environ/") {
            Some(name) => self
                .environment
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    format!("{raw}: {name} is set neither in the environment nor in environment_variables")
                }),
            None => Ok(raw.to_string()),
        })
    }

    /// The custom labels: (label name, what fills it). A metadata label must name a path under
    /// `metadata.`; label names are sanitised as LiteLLM does (`metadata.foo` -> `metadata_foo`).
    pub fn extras(&self, path: &str, text: &str) -> (Vec<(String, Extra)>, Vec<String>) {
        let ls = &self.litellm_settings;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for m in &ls.custom_prometheus_metadata_labels {
            match m.strip_prefix("metadata.").filter(|p| !p.is_empty()) {
                Some(p) => out.push((
                    sanitize_label(&format!("metadata_{}", p.replace('.', "_"))),
                    Extra::Metadata(p.split('.').map(str::to_string).collect()),
                )),
                None => errors.push(format!(
                    "{}: custom_prometheus_metadata_labels entry {m:?} must look like metadata.<key>",
                    crate::selection::position(path, text, m)
                )),
            }
        }
        for t in &ls.custom_prometheus_tags {
            out.push((
                sanitize_label(&format!("tag_{t}")),
                Extra::Tag(like_pattern(t)),
            ));
        }
        if out.len() > 64 {
            errors.push(format!("{path}: at most 64 custom labels"));
        }
        (out, errors)
    }

    /// The metric selection of this file; errors and warnings name file positions.
    pub fn selection(
        &self,
        path: &str,
        text: &str,
        extra_names: &[String],
    ) -> (Selection, crate::selection::Findings) {
        let ls = &self.litellm_settings;
        Selection::build(
            ls.prometheus_metrics_config.as_deref(),
            &ls.prometheus_exclude_metrics,
            &ls.prometheus_exclude_labels,
            ls.prometheus_emit_stream_label.unwrap_or(false),
            extra_names,
            path,
            text,
        )
    }

    /// What this file says for merging LiteLLM's stored settings over it, and for `check-config`
    /// what was taken from it and ignored.
    fn report(&self, state_file: bool) -> (db_settings::FileSide, Vec<String>) {
        let mut file_report = Vec::new();
        if !self.taken.is_empty() {
            file_report.push(format!("Taken from the file: {}", self.taken.join(", ")));
        }
        if !self.ignored.is_empty() {
            file_report.push(format!(
                "Ignored (LiteLLM settings that do not concern the exporter): {}",
                self.ignored.join("; ")
            ));
        }
        // LiteLLM reads STORE_MODEL_IN_DB after putting the file's environment_variables into
        // its environment, so they win here too.
        let env_gate = self
            .environment
            .get("STORE_MODEL_IN_DB")
            .cloned()
            .or_else(|| std::env::var("STORE_MODEL_IN_DB").ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let db_settings = db_settings::FileSide {
            owned: self.owned.clone(),
            store_model_in_db: if self.store_model_in_db {
                Some("the config file")
            } else if env_gate {
                Some("STORE_MODEL_IN_DB")
            } else {
                None
            },
            partitioning: self.general_settings.use_spend_logs_partitioning,
            state_file,
        };
        if db_settings.store_model_in_db.is_some() {
            file_report.push(format!(
                "store_model_in_db is on ({}): at start and on SIGHUP the exporter also reads LiteLLM's stored general_settings and litellm_settings (LiteLLM_Config, through the view {} of sql/setup/readonly_role.sql); a key the file sets wins, as in LiteLLM.",
                db_settings.store_model_in_db.unwrap_or_default(),
                db_settings::VIEW
            ));
        }
        (db_settings, file_report)
    }
}

/// serde reports an unknown key as "unknown field `x`, expected one of `a`, `b` at line L column
/// C"; this adds the closest valid key, so that a typo reads as one actionable line.
fn suggest(msg: &str) -> String {
    let Some(rest) = msg.split("unknown field `").nth(1) else {
        return msg.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    match crate::selection::closest(field, expected.iter().copied()) {
        Some(c) => format!("{msg} (did you mean {c}?)"),
        None => msg.to_string(),
    }
}

/// A Prometheus label name: characters outside [A-Za-z0-9_] become `_`.
pub fn sanitize_label(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// LiteLLM tag wildcards (`*`) as a SQL LIKE pattern, with LIKE's own wildcards escaped.
pub fn like_pattern(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    for c in tag.chars() {
        match c {
            '\\' | '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            '*' => out.push('%'),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// The validated configuration; the only configuration type that travels past `main`.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// The file the URL was read from (`--db-url-file` without `--db-url`): re-read on SIGHUP.
    pub db_url_file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub telemetry_path: String,
    /// `--web.config.file` and `--web.bearer-token-file`, re-read on SIGHUP.
    pub web_files: crate::web_config::WebFiles,
    /// What they said at start (validated here, so that a bad file exits with code 2).
    pub web: std::sync::Arc<crate::web_config::WebSettings>,
    /// `--web.drain-timeout`: how long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    pub poll_interval: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    pub state_file: Option<PathBuf>,
    pub tail: TailConfig,
    pub pool: PoolSettings,
    pub identity: Identity,
    pub entities: EntityConfig,
    pub sources: Sources,
    pub thresholds: Thresholds,
    pub selection: Selection,
    /// `prometheus_emit_stream_label`.
    pub stream_label: bool,
    /// What fills each custom label, in the order of `selection.extra_names`.
    pub extras: Vec<Extra>,
    /// Accepted but worth saying (e.g. a LiteLLM metric the database cannot supply).
    pub warnings: Vec<String>,
    /// The memory guard's budget (None: no guard).
    pub memory_budget: Option<crate::budget::MemoryBudget>,
    /// `general_settings.use_spend_logs_partitioning` of the proxy's config (recorded, logged),
    /// or of LiteLLM's stored settings once read (`db_settings`).
    pub spend_logs_partitioning: Option<bool>,
    /// What the file says for merging LiteLLM's stored settings over it.
    pub db_settings: db_settings::FileSide,
    /// For `check-config`: what was taken from the file and which LiteLLM keys were ignored.
    pub file_report: Vec<String>,
}

pub fn parse_duration(what: &str, s: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| invalid(format!("{what} {s:?}: {e} (examples: 500ms, 15s, 2m, 1h)")))?;
    if d.is_zero() {
        return Err(invalid(format!("{what} must be greater than zero")));
    }
    Ok(d)
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| invalid(format!("--web.listen-address {s:?} is not host:port (e.g. 0.0.0.0:{DEFAULT_PORT} or :{DEFAULT_PORT})")))
}

fn check_buckets(b: &[f64]) -> Result<(), ConfigError> {
    if b.is_empty() {
        return Err(invalid("prometheus_latency_buckets must not be empty"));
    }
    for w in b.windows(2) {
        if w[0] >= w[1] {
            return Err(invalid(
                "prometheus_latency_buckets must be strictly increasing",
            ));
        }
    }
    if b.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return Err(invalid(
            "prometheus_latency_buckets must be finite and not negative (+Inf is implied)",
        ));
    }
    Ok(())
}

/// The durations a run is timed by.
struct Timing {
    drain_timeout: Duration,
    poll_interval: Duration,
    lateness: Duration,
    recent: Duration,
    statement_timeout: Duration,
}

impl Timing {
    /// The ledger's reading windows; a catch-up chunk aims well inside `statement_timeout`.
    fn tail(&self, growth: u32) -> TailConfig {
        TailConfig {
            lateness: self.lateness,
            recent: self.recent,
            growth,
            chunk_target: Duration::from_secs(2).min(self.statement_timeout / 4),
        }
    }

    /// The pool; connecting never waits longer than a statement may run.
    fn pool(&self, size: usize) -> PoolSettings {
        PoolSettings {
            size,
            statement_timeout: self.statement_timeout,
            connect_timeout: Duration::from_secs(5).min(self.statement_timeout),
        }
    }
}

/// `Config::build` under way: the flags, the file and where its keys are, and every problem and
/// warning found so far. Each step reads one group of settings and records what is wrong with
/// them instead of stopping.
struct Building<'a> {
    args: &'a RunArgs,
    file: &'a FileConfig,
    loc: Locator<'a>,
    errs: Vec<String>,
    warnings: Vec<String>,
}

impl Building<'_> {
    /// An `exporter` key of the file, named by its position.
    fn at_ex(&self, k: &str) -> String {
        format!("{}: exporter.{k}", self.loc.at(&["exporter", k]))
    }

    fn at_ls(&self, k: &str) -> String {
        self.loc.at(&["litellm_settings", k])
    }

    /// A flag over the file's `exporter.key`: the value, and how to name it in a message (a file
    /// value by its position, a flag by its name).
    fn pick(
        &self,
        flag: &Option<String>,
        file: &Option<String>,
        name: &str,
        key: &str,
    ) -> (Option<String>, String) {
        match (flag, file) {
            (Some(v), _) => (Some(v.clone()), name.to_string()),
            (None, Some(v)) => (Some(v.clone()), self.at_ex(key)),
            (None, None) => (None, name.to_string()),
        }
    }

    /// A duration picked like `pick`, or its default (also when it is invalid, with the error
    /// recorded); and how to name it.
    fn duration(
        &mut self,
        flag: &Option<String>,
        file: &Option<String>,
        name: &str,
        key: &str,
        default: &str,
    ) -> (Duration, String) {
        let (v, what) = self.pick(flag, file, name, key);
        let s = v.unwrap_or_else(|| default.to_string());
        match parse_duration(&what, &s) {
            Ok(d) => (d, what),
            Err(e) => {
                self.errs.push(e.to_string());
                (
                    parse_duration(name, default).unwrap_or(Duration::from_secs(1)),
                    what,
                )
            }
        }
    }

    /// The file's metric selection and what fills its custom labels (none without a file).
    fn selection(&mut self) -> (Selection, Vec<Extra>) {
        if self.args.config_file.is_none() {
            return (Selection::default(), Vec::new());
        }
        let (path, text) = (self.loc.path, self.loc.text);
        let (extras, errors) = self.file.extras(path, text);
        self.errs.extend(errors);
        let names: Vec<String> = extras.iter().map(|(n, _)| n.clone()).collect();
        let (selection, findings) = self.file.selection(path, text, &names);
        self.errs.extend(findings.errors);
        self.warnings.extend(findings.warnings);
        (selection, extras.into_iter().map(|(_, e)| e).collect())
    }

    /// One cap per family: LiteLLM's general cap, or its end-user cap when end-user tracking is
    /// on, whichever is smaller.
    fn series_cap(&mut self) -> Option<usize> {
        let ls = &self.file.litellm_settings;
        for (k, v) in [
            (
                "prometheus_metrics_max_series_per_metric",
                ls.prometheus_metrics_max_series_per_metric,
            ),
            (
                "prometheus_end_user_metrics_max_series_per_metric",
                ls.prometheus_end_user_metrics_max_series_per_metric,
            ),
        ] {
            if v == Some(0) {
                let at = self.at_ls(k);
                self.errs.push(format!("{at}: {k} must be at least 1"));
            }
        }
        match (
            ls.prometheus_metrics_max_series_per_metric,
            self.file.end_user_cap(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .filter(|c| *c > 0)
    }

    fn check_caller_identity(&mut self) {
        let key = "prometheus_deployment_and_latency_caller_identity";
        let ls = &self.file.litellm_settings;
        if let Some(m) = ls
            .prometheus_deployment_and_latency_caller_identity
            .as_deref()
        {
            if !["api_key_alias", "user_email", "both"].contains(&m) {
                self.errs.push(format!(
                    "{}: {key} {m:?}: use api_key_alias, user_email or both (LiteLLM refuses to start on any other value)",
                    self.at_ls(key)
                ));
            }
        }
    }

    /// The database: `--db-url`, else `--db-url-file` (returned too: re-read on SIGHUP), else the
    /// file's `general_settings.database_url`. `check-config` may go without one.
    fn target(&mut self, check_only: bool) -> (Option<Target>, Option<PathBuf>) {
        let args = self.args;
        let stand_in = || "postgres://check-config@localhost/check".to_string();
        let mut db_url_file = None;
        let url = match (&args.db_url, &args.db_url_file, self.file.database_url()) {
            (Some(u), _, _) if !u.trim().is_empty() => Some(u.clone()),
            (_, Some(p), _) => {
                db_url_file = Some(p.clone());
                match std::fs::read_to_string(p) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        self.errs
                            .push(format!("--db-url-file {}: {e}", p.display()));
                        None
                    }
                }
            }
            (_, _, Some(Ok(u))) => Some(u),
            (_, _, Some(Err(e))) => {
                let at = self.loc.at(&["general_settings", "database_url"]);
                if check_only {
                    self.warnings.push(format!("{at}: general_settings.database_url {e} here; the exporter needs it at start"));
                    Some(stand_in())
                } else {
                    self.errs
                        .push(format!("{at}: general_settings.database_url {e}"));
                    None
                }
            }
            _ if check_only => Some(stand_in()),
            _ => {
                self.errs.push("no database URL: set --db-url, DATABASE_URL, --db-url-file or general_settings.database_url in --config.file".into());
                None
            }
        };
        let from_file = args.db_url.as_deref().is_none_or(|u| u.trim().is_empty())
            && args.db_url_file.is_none()
            && self.file.general_settings.database_url.is_some();
        let target = url.and_then(|u| match db::parse_url(&u) {
            Ok(t) => Some(t),
            Err(e) => {
                self.errs.push(if from_file {
                    format!(
                        "{}: general_settings.database_url: {e}",
                        self.loc.at(&["general_settings", "database_url"])
                    )
                } else {
                    e.to_string()
                });
                None
            }
        });
        (target, db_url_file)
    }

    /// `--web.listen-address` and `--web.telemetry-path`.
    fn address_and_path(&mut self) -> (SocketAddr, String) {
        let (args, ex) = (self.args, &self.file.exporter);
        let (v, what) = self.pick(
            &args.listen_address,
            &ex.listen_address,
            "--web.listen-address",
            "listen_address",
        );
        let listen = match parse_listen(v.as_deref().unwrap_or("0.0.0.0:10410")) {
            Ok(l) => l,
            Err(e) => {
                self.errs
                    .push(e.to_string().replace("--web.listen-address", &what));
                SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))
            }
        };
        let (v, what) = self.pick(
            &args.telemetry_path,
            &ex.telemetry_path,
            "--web.telemetry-path",
            "telemetry_path",
        );
        let telemetry_path = v.unwrap_or_else(|| "/metrics".into());
        if !telemetry_path.starts_with('/')
            || telemetry_path == "/"
            || telemetry_path.starts_with("/-/")
        {
            self.errs.push(format!(
                "{what} {telemetry_path:?} must start with / and not be / or under /-/"
            ));
        }
        (listen, telemetry_path)
    }

    /// `--web.config.file` and `--web.bearer-token-file`, and what they say now.
    fn web(
        &mut self,
    ) -> (
        crate::web_config::WebFiles,
        Option<std::sync::Arc<crate::web_config::WebSettings>>,
    ) {
        let web_files = crate::web_config::WebFiles {
            config_file: self.args.web_config_file.clone(),
            bearer_token_file: self.args.bearer_token_file.clone(),
        };
        match web_files.load() {
            Ok(w) => (web_files, Some(std::sync::Arc::new(w))),
            Err(e) => {
                self.errs.push(e.to_string());
                (web_files, None)
            }
        }
    }

    /// The durations, and how they must relate: the recent window within the lateness, the
    /// lateness beyond LiteLLM's batch writes.
    fn timing(&mut self) -> Timing {
        let (args, ex) = (self.args, &self.file.exporter);
        let (drain_timeout, _) =
            self.duration(&args.drain_timeout, &None, "--web.drain-timeout", "", "10s");
        let (poll_interval, poll_what) = self.duration(
            &args.poll_interval,
            &ex.poll_interval,
            "--poll-interval",
            "poll_interval",
            "15s",
        );
        let (lateness, lateness_what) = self.duration(
            &args.lateness,
            &ex.lateness,
            "--ledger.lateness",
            "lateness",
            "1h",
        );
        let (recent, recent_what) = self.duration(
            &args.recent_window,
            &ex.recent_window,
            "--ledger.recent-window",
            "recent_window",
            "2m",
        );
        let (statement_timeout, _) = self.duration(
            &args.statement_timeout,
            &ex.statement_timeout,
            "--db.statement-timeout",
            "statement_timeout",
            "15s",
        );
        if poll_interval < Duration::from_millis(100) {
            self.errs
                .push(format!("{poll_what} must be at least 100ms"));
        }
        self.check_lateness(lateness, &lateness_what, recent, &recent_what);
        Timing {
            drain_timeout,
            poll_interval,
            lateness,
            recent,
            statement_timeout,
        }
    }

    /// The recent window fits in the lateness window, and the lateness exceeds LiteLLM's batch
    /// writes; each named as the user named it.
    fn check_lateness(
        &mut self,
        lateness: Duration,
        lateness_what: &str,
        recent: Duration,
        recent_what: &str,
    ) {
        // A setting named in the file leads the line with its position; the other is named bare.
        let bare = |what: &str| what.rsplit(": ").next().unwrap_or(what).to_string();
        let human = |d: Duration| humantime::format_duration(d).to_string();
        if recent > lateness {
            self.errs.push(
                if recent_what.contains(": ") || !lateness_what.contains(": ") {
                    format!(
                        "{recent_what} ({}) must not exceed {} ({})",
                        human(recent),
                        bare(lateness_what),
                        human(lateness)
                    )
                } else {
                    format!(
                        "{lateness_what} ({}) must not be shorter than {} ({})",
                        human(lateness),
                        bare(recent_what),
                        human(recent)
                    )
                },
            );
        }
        // LiteLLM writes spend logs in batches, every proxy_batch_write_at seconds plus 0-5 s:
        // a row can reach the database that long after its request. Rows later than the
        // lateness are never counted.
        if let Some(batch) = self.file.general_settings.proxy_batch_write_at {
            let latest = Duration::from_secs(batch.saturating_add(PROXY_BATCH_JITTER));
            if lateness <= latest {
                self.errs.push(format!(
                    "{}: general_settings.proxy_batch_write_at is {batch} s, so LiteLLM writes spend-log rows up to {} s (with its 0-5 s jitter) after the request, but {} is {}: rows that late would never be counted; raise the lateness above {} s",
                    self.loc.at(&["general_settings", "proxy_batch_write_at"]),
                    latest.as_secs(),
                    bare(lateness_what),
                    human(lateness),
                    latest.as_secs()
                ));
            }
        }
    }

    fn window_growth(&mut self) -> u32 {
        let (growth, what) = match (self.args.window_growth, self.file.exporter.window_growth) {
            (Some(g), _) => (g, "--ledger.window-growth".to_string()),
            (None, Some(g)) => (g, self.at_ex("window_growth")),
            (None, None) => (4, String::new()),
        };
        if growth < 2 {
            self.errs.push(format!("{what} must be at least 2"));
        }
        growth
    }

    fn pool_size(&mut self) -> usize {
        let (size, what) = match (self.args.pool_size, self.file.exporter.pool_size) {
            (Some(s), _) => (s, "--db.pool-size".to_string()),
            (None, Some(s)) => (s, self.at_ex("pool_size")),
            (None, None) => (2, String::new()),
        };
        if !(1..=MAX_POOL_SIZE).contains(&size) {
            self.errs
                .push(format!("{what} must be 1 to {MAX_POOL_SIZE}"));
        }
        size
    }

    fn memory_budget(&mut self) -> Option<crate::budget::MemoryBudget> {
        let (v, what) = self.pick(
            &self.args.memory_budget,
            &self.file.exporter.memory_budget,
            "--memory.budget",
            "memory_budget",
        );
        match crate::budget::resolve(v.as_deref()) {
            Ok(b) => b,
            Err(e) => {
                self.errs.push(e.replace("--memory.budget", &what));
                None
            }
        }
    }

    /// `--log.level` and `--log.format`.
    fn logging(&mut self) -> (String, LogFormat) {
        let log_level = self.args.log_level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            self.errs.push(format!(
                "--log.level {log_level:?}: use error, warn, info, debug or trace"
            ));
        }
        let log_format = match self.args.log_format.as_deref().unwrap_or("logfmt") {
            "json" => LogFormat::Json,
            "logfmt" => LogFormat::Logfmt,
            other => {
                self.errs
                    .push(format!("--log.format {other:?}: use logfmt or json"));
                LogFormat::Logfmt
            }
        };
        (log_level, log_format)
    }

    /// `prometheus_latency_buckets`, or LiteLLM's default.
    fn latency_buckets(&mut self) -> Vec<f64> {
        let ls = &self.file.litellm_settings;
        let latency = ls
            .prometheus_latency_buckets
            .clone()
            .unwrap_or_else(|| LATENCY_BUCKETS.to_vec());
        if let Err(e) = check_buckets(&latency) {
            self.errs.push(if ls.prometheus_latency_buckets.is_some() {
                format!("{}: {e}", self.at_ls("prometheus_latency_buckets"))
            } else {
                e.to_string()
            });
        }
        latency
    }

    /// `--state.file`; without one, LiteLLM's retention lowers the counters at a restart.
    fn state_file(&mut self) -> Option<PathBuf> {
        let state_file = self
            .args
            .state_file
            .clone()
            .or(self.file.exporter.state_file.clone());
        if let Some(period) = &self
            .file
            .general_settings
            .maximum_spend_logs_retention_period
        {
            if state_file.is_none() {
                self.warnings.push(format!(
                    "{}: general_settings.maximum_spend_logs_retention_period {period}: LiteLLM deletes older spend-log rows, and without --state.file (exporter.state_file) a restart rebuilds the counters from the rows that remain, so they drop",
                    self.loc.at(&["general_settings", "maximum_spend_logs_retention_period"])
                ));
            }
        }
        state_file
    }
}

impl Config {
    /// The configuration of a run; every problem of the file and the flags in one error.
    pub fn build(args: &RunArgs) -> Result<Config, ConfigError> {
        Self::build_with(args, false)
    }

    /// `check-config`: the same, except that the database URL may be missing (or name a variable
    /// this environment does not set): a stand-in is used and, for the variable, a warning.
    pub fn check(args: &RunArgs) -> Result<Config, ConfigError> {
        Self::build_with(args, true)
    }

    fn build_with(args: &RunArgs, check_only: bool) -> Result<Config, ConfigError> {
        let (file, text, path) = match &args.config_file {
            Some(p) => {
                let (file, text) = FileConfig::load(p)?;
                (file, text, p.display().to_string())
            }
            None => (FileConfig::default(), String::new(), String::new()),
        };
        let mut b = Building {
            args,
            file: &file,
            loc: Locator {
                path: &path,
                text: &text,
            },
            errs: file.errors.clone(),
            warnings: file.warnings.clone(),
        };
        // Each step records its problems and goes on, so that the first problem does not hide
        // the others; their order here is the order of the lines without a file position.
        let (mut selection, extras) = b.selection();
        selection.max_series = b.series_cap();
        b.check_caller_identity();
        let (target, db_url_file) = b.target(check_only);
        let (listen, telemetry_path) = b.address_and_path();
        let (web_files, web) = b.web();
        let timing = b.timing();
        let growth = b.window_growth();
        let size = b.pool_size();
        let memory_budget = b.memory_budget();
        let (log_level, log_format) = b.logging();
        let latency = b.latency_buckets();
        let state_file = b.state_file();

        let Building {
            mut errs,
            mut warnings,
            ..
        } = b;
        sort_by_position(&mut errs);
        sort_by_position(&mut warnings);
        let (Some(target), Some(web), true) = (target, web, errs.is_empty()) else {
            return Err(ConfigError::Findings(errs));
        };
        let (db_settings, file_report) = file.report(state_file.is_some());
        let end_user = file.end_user();
        let ex = &file.exporter;
        let ls = &file.litellm_settings;
        Ok(Config {
            target,
            db_url_file,
            listen,
            telemetry_path,
            web_files,
            web,
            drain_timeout: timing.drain_timeout,
            poll_interval: timing.poll_interval,
            log_level,
            log_format,
            state_file,
            tail: timing.tail(growth),
            pool: timing.pool(size),
            identity: Identity {
                end_user,
                user_email: ex.labels.user_email.unwrap_or(false),
                client_ip: ex.labels.client_ip.unwrap_or(false),
            },
            sources: ex.sources,
            entities: EntityConfig {
                sources: ex.sources,
                customers: end_user && ex.sources.customers,
                user_email_alias: ls
                    .prometheus_user_budget_label_include_email_alias
                    .unwrap_or(false),
            },
            thresholds: Thresholds::new(&latency, DEFAULT_BUCKETS),
            selection,
            stream_label: ls.prometheus_emit_stream_label.unwrap_or(false),
            extras,
            warnings,
            memory_budget,
            spend_logs_partitioning: file.general_settings.use_spend_logs_partitioning,
            db_settings,
            file_report,
        })
    }

    /// How spend-log rows are read under this configuration from a database with `schema`: the
    /// one projection the refresh loop, `backfill` and `plan` all read through.
    pub fn projection(&self, schema: &crate::schema::Schema) -> crate::ledger::read::Projection {
        crate::ledger::read::Projection::new(
            schema,
            self.selection.dims(),
            self.identity,
            self.thresholds.clone(),
            self.stream_label,
            &self.extras,
        )
    }

    /// The memory guard's rule for the ledger (None: no budget).
    pub fn fold_rule(&self) -> Option<crate::ledger::fold::FoldRule> {
        self.memory_budget.as_ref().map(|b| {
            crate::ledger::fold::FoldRule::new(b.classes_bytes(), &self.selection, &self.thresholds)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_addresses() {
        assert_eq!(
            parse_duration("x", "500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("x", "2m").ok(),
            Some(Duration::from_secs(120))
        );
        assert!(parse_duration("x", "soon").is_err());
        assert!(parse_duration("x", "0s").is_err());
        assert_eq!(parse_listen(":10410").ok(), "0.0.0.0:10410".parse().ok());
        assert!(parse_listen("nope").is_err());
    }

    #[test]
    fn buckets_are_checked() {
        assert!(check_buckets(&[0.1, 1.0]).is_ok());
        assert!(check_buckets(&[1.0, 0.1]).is_err());
        assert!(check_buckets(&[f64::NAN]).is_err());
        assert!(check_buckets(&[]).is_err());
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        assert_eq!(
            suggest("unknown field `pol_interval`, expected `poll_interval` or `lateness`"),
            "unknown field `pol_interval`, expected `poll_interval` or `lateness` (did you mean poll_interval?)"
        );
    }

    /// Writes `yaml` to a fresh file and loads it.
    fn load(name: &str, yaml: &str) -> Result<FileConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("lx-cfg-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.yaml");
        std::fs::write(&f, yaml).expect("write");
        // Positions read `c.yaml:line:column`, without the directory.
        let strip = |v: &mut Vec<String>| {
            let d = format!("{}/", dir.display());
            v.iter_mut().for_each(|l| *l = l.replace(&d, ""));
        };
        let r = FileConfig::load(&f).map(|(mut c, _)| {
            strip(&mut c.errors);
            strip(&mut c.warnings);
            c
        });
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn keys_are_found_by_their_nesting() {
        let text = "litellm_settings:\n  callbacks: [prometheus]\nexporter:\n  # lateness: 1h\n  labels:\n    client_ip: true\n  lateness: 2h\ngeneral_settings: {database_url: x}\n";
        let loc = Locator {
            path: "c.yaml",
            text,
        };
        assert_eq!(loc.at(&["exporter", "lateness"]), "c.yaml:7:3");
        assert_eq!(loc.at(&["exporter", "labels", "client_ip"]), "c.yaml:6:5");
        assert_eq!(loc.at(&["exporter"]), "c.yaml:3:1");
        // A flow mapping: the first occurrence of the key.
        assert_eq!(loc.at(&["general_settings", "database_url"]), "c.yaml:8:20");
        let mut lines = vec![
            "--poll-interval must be at least 100ms".to_string(),
            "c.yaml:9:3: b".to_string(),
            "c.yaml:10:1: c".to_string(),
            "c.yaml:2:5: a".to_string(),
        ];
        sort_by_position(&mut lines);
        assert_eq!(
            lines,
            vec![
                "c.yaml:2:5: a",
                "c.yaml:9:3: b",
                "c.yaml:10:1: c",
                "--poll-interval must be at least 100ms"
            ]
        );
    }

    #[test]
    fn every_problem_of_a_file_is_found_in_one_pass() {
        let f = load(
            "all",
            "exporter:\n  pol_interval: 1s\n  pool_size: many\nlitellm_settings:\n  prometheus_exclude_metric: []\n  drop_params: true\n  not_a_litellm_key: 1\nmodel_lis: []\nsomething_else: {}\ngeneral_settings:\n  master_key: os.environ/KEY\n  database_ulr: x\n",
        )
        .expect("parsed");
        assert_eq!(
            f.errors,
            vec![
                "c.yaml:2:3: unknown key exporter.pol_interval (did you mean poll_interval?)",
                "c.yaml:3:3: exporter.pool_size: invalid type: string \"many\", expected usize",
                "c.yaml:5:3: unknown key litellm_settings.prometheus_exclude_metric (did you mean prometheus_exclude_metrics?)",
                "c.yaml:8:1: unknown section model_lis (did you mean model_list?)",
            ]
        );
        assert_eq!(f.warnings.len(), 3, "{:?}", f.warnings);
        assert!(f.warnings[0].starts_with(
            "c.yaml:7:3: litellm_settings.not_a_litellm_key is not a LiteLLM 1.110.2 setting"
        ));
        assert!(f.warnings[1].starts_with("c.yaml:9:1: something_else is neither"));
        assert!(f.warnings[2].starts_with("c.yaml:12:3: general_settings.database_ulr is not a LiteLLM 1.110.2 setting (did you mean database_url?)"), "{:?}", f.warnings);
        assert_eq!(
            f.ignored,
            vec![
                "litellm_settings: drop_params",
                "general_settings: master_key"
            ]
        );
    }

    #[test]
    fn database_url_resolves_os_environ_like_litellm() {
        let f = load(
            "env",
            "general_settings:\n  database_url: os.environ/LX_TEST_FILE_DB\nenvironment_variables:\n  LX_TEST_FILE_DB: postgres://u@h/file\n",
        )
        .expect("parsed");
        assert_eq!(
            f.database_url(),
            Some(Ok("postgres://u@h/file".to_string()))
        );
        let f = load(
            "unset",
            "general_settings:\n  database_url: os.environ/LX_TEST_SURELY_UNSET\n",
        )
        .expect("parsed");
        let e = f.database_url().expect("given").expect_err("unset");
        assert!(e.contains("LX_TEST_SURELY_UNSET is set neither"), "{e}");
        let f = load(
            "plain",
            "general_settings:\n  database_url: postgres://u@h/plain\n",
        )
        .expect("parsed");
        assert_eq!(
            f.database_url(),
            Some(Ok("postgres://u@h/plain".to_string()))
        );
    }

    #[test]
    fn end_user_settings_follow_litellm() {
        let on = "litellm_settings:\n  enable_end_user_cost_tracking_prometheus_only: true\n";
        let f = load("eu1", on).expect("parsed");
        assert!(f.end_user());
        assert_eq!(
            f.end_user_cap(),
            Some(END_USER_MAX_SERIES),
            "LiteLLM's default"
        );
        let f = load(
            "eu2",
            &format!("{on}  prometheus_end_user_metrics_max_series_per_metric: 50\n"),
        )
        .expect("parsed");
        assert_eq!(f.end_user_cap(), Some(50));
        let f = load(
            "eu3",
            &format!("{on}  prometheus_end_user_metrics_max_series_per_metric: null\n"),
        )
        .expect("parsed");
        assert_eq!(f.end_user_cap(), None, "null turns the cap off");
        let f = load(
            "eu4",
            &format!("{on}  disable_end_user_cost_tracking: true\n"),
        )
        .expect("parsed");
        assert!(!f.end_user() && f.end_user_cap().is_none());
        assert!(
            f.warnings
                .iter()
                .any(|w| w.contains("disable_end_user_cost_tracking wins")),
            "{:?}",
            f.warnings
        );
        let f = load(
            "eu5",
            "litellm_settings:\n  prometheus_end_user_metrics_max_series_per_metric: 50\n",
        )
        .expect("parsed");
        assert_eq!(f.end_user_cap(), None, "only with end-user tracking on");
    }

    #[test]
    fn file_settings_apply_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("lx-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.yaml");
        std::fs::write(
            &f,
            "exporter:\n  poll_interval: 3s\n  lateness: 2h\n  recent_window: 5m\n  window_growth: 7\n  statement_timeout: 9s\n  pool_size: 3\n  listen_address: ':9999'\n  telemetry_path: /m\n  state_file: /tmp/s.json\n",
        )
        .expect("write");
        let args = crate::cli::RunArgs {
            db_url: Some("postgres://u@h/d".into()),
            poll_interval: Some("1s".into()),
            config_file: Some(f),
            ..Default::default()
        };
        let c = Config::build(&args).expect("valid");
        assert_eq!(c.poll_interval, Duration::from_secs(1), "the flag wins");
        assert_eq!(c.tail.lateness, Duration::from_secs(7200));
        assert_eq!(c.tail.recent, Duration::from_secs(300));
        assert_eq!(c.tail.growth, 7);
        assert_eq!(c.pool.statement_timeout, Duration::from_secs(9));
        assert_eq!(c.pool.size, 3);
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.telemetry_path, "/m");
        assert_eq!(c.state_file.as_deref(), Some(Path::new("/tmp/s.json")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_side_of_the_stored_settings_merge() {
        let dir = std::env::temp_dir().join(format!("lx-cfg-dbs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.yaml");
        std::fs::write(
            &f,
            "general_settings:\n  store_model_in_db: \"TRUE\"\n  use_spend_logs_partitioning: false\n  master_key: x\nlitellm_settings:\n  callbacks: [prometheus]\n  prometheus_emit_stream_label: null\n",
        )
        .expect("write");
        let args = crate::cli::RunArgs {
            db_url: Some("postgres://u@h/d".into()),
            config_file: Some(f.clone()),
            ..Default::default()
        };
        let c = Config::build(&args).expect("valid");
        let owned: Vec<&str> = c.db_settings.owned.iter().map(String::as_str).collect();
        assert_eq!(
            owned,
            [
                "general_settings.master_key",
                "general_settings.store_model_in_db",
                "general_settings.use_spend_logs_partitioning",
                "litellm_settings.callbacks",
                "litellm_settings.prometheus_emit_stream_label",
            ]
        );
        assert_eq!(c.db_settings.store_model_in_db, Some("the config file"));
        assert_eq!(c.db_settings.partitioning, Some(false));
        assert!(c
            .file_report
            .iter()
            .any(|l| l.contains("store_model_in_db is on")));
        // STORE_MODEL_IN_DB, the file's environment_variables winning over the process's.
        for (env, gate) in [("false", None), ("True", Some("STORE_MODEL_IN_DB"))] {
            std::fs::write(
                &f,
                format!("general_settings:\n  store_model_in_db: false\nenvironment_variables:\n  STORE_MODEL_IN_DB: \"{env}\"\n"),
            )
            .expect("write");
            let c = Config::build(&args).expect("valid");
            assert_eq!(c.db_settings.store_model_in_db, gate, "{env}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_first_problem_does_not_hide_the_others() {
        let dir = std::env::temp_dir().join(format!("lx-cfg-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.yaml");
        std::fs::write(
            &f,
            "exporter:\n  poll_interval: soon\n  lateness: 5s\n  pool_size: 0\ngeneral_settings:\n  proxy_batch_write_at: 30\n",
        )
        .expect("write");
        let args = crate::cli::RunArgs {
            db_url: Some("postgres://u@h/d".into()),
            log_level: Some("loud".into()),
            config_file: Some(f.clone()),
            ..Default::default()
        };
        let e = Config::build(&args).expect_err("invalid").to_string();
        let p = f.display().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(
            lines[0].starts_with(&format!("{p}:2:3: exporter.poll_interval \"soon\"")),
            "{e}"
        );
        assert_eq!(lines[1], format!("{p}:3:3: exporter.lateness (5s) must not be shorter than --ledger.recent-window (2m)"));
        assert!(
            lines[2].starts_with(&format!("{p}:4:3: exporter.pool_size must be 1 to")),
            "{e}"
        );
        assert!(
            lines[3].starts_with(&format!(
                "{p}:6:3: general_settings.proxy_batch_write_at is 30 s"
            )) && lines[3].contains("but exporter.lateness is 5s"),
            "{e}"
        );
        assert_eq!(
            lines[4],
            "--log.level \"loud\": use error, warn, info, debug or trace"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
