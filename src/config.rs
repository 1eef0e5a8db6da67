//! Flags, environment and the optional YAML file, turned into one validated, immutable `Config`.
//! Precedence: a flag (or its environment variable) over the file over the built-in default.
//! Every rejection is one line naming the setting; `main` exits with code 2 on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::catalogue::{DEFAULT_BUCKETS, LATENCY_BUCKETS};
use crate::cli::{RunArgs, DEFAULT_PORT};
use crate::db::{self, PoolSettings, Target, MAX_POOL_SIZE};
use crate::entities::EntityConfig;
use crate::ledger::read::{Extra, Identity};
use crate::ledger::tail::TailConfig;
use crate::ledger::values::Thresholds;
use crate::selection::{MetricsGroup, Selection};

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

/// LiteLLM's own `litellm_settings` keys that the exporter honours.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LitellmSettings {
    pub prometheus_metrics_config: Option<Vec<MetricsGroup>>,
    #[serde(default)]
    pub prometheus_exclude_metrics: Vec<String>,
    #[serde(default)]
    pub prometheus_exclude_labels: Vec<String>,
    pub enable_end_user_cost_tracking_prometheus_only: Option<bool>,
    pub prometheus_user_budget_label_include_email_alias: Option<bool>,
    pub prometheus_latency_buckets: Option<Vec<f64>>,
    #[serde(default)]
    pub custom_prometheus_metadata_labels: Vec<String>,
    #[serde(default)]
    pub custom_prometheus_tags: Vec<String>,
    pub prometheus_emit_stream_label: Option<bool>,
    pub prometheus_metrics_max_series_per_metric: Option<usize>,
}

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

/// Which tables are read at all; everything is on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    /// The spend log (every counter and histogram).
    pub ledger: bool,
    pub teams: bool,
    pub keys: bool,
    pub users: bool,
    pub organizations: bool,
    pub customers: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            ledger: true,
            teams: true,
            keys: true,
            users: true,
            organizations: true,
            customers: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub litellm_settings: LitellmSettings,
    #[serde(default)]
    pub exporter: ExporterSettings,
}

impl FileConfig {
    /// Reads and parses the file; also returns its text, for pointing at entries.
    pub fn load(path: &Path) -> Result<(FileConfig, String), ConfigError> {
        let err = |msg: String| ConfigError::File {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        if text.trim().is_empty() {
            return Ok((FileConfig::default(), text));
        }
        let file = serde_yaml::from_str(&text).map_err(|e| err(suggest(&e.to_string())))?;
        Ok((file, text))
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

impl Config {
    pub fn build(args: &RunArgs) -> Result<Config, ConfigError> {
        let (file, selection, warnings, extras) = match &args.config_file {
            Some(p) => {
                let (file, text) = FileConfig::load(p)?;
                let path = p.display().to_string();
                let (extras, mut errors) = file.extras(&path, &text);
                let names: Vec<String> = extras.iter().map(|(n, _)| n.clone()).collect();
                let (mut selection, findings) = file.selection(&path, &text, &names);
                errors.extend(findings.errors);
                match file
                    .litellm_settings
                    .prometheus_metrics_max_series_per_metric
                {
                    Some(0) => errors.push(format!(
                        "{}: prometheus_metrics_max_series_per_metric must be at least 1",
                        crate::selection::position(
                            &path,
                            &text,
                            "prometheus_metrics_max_series_per_metric"
                        )
                    )),
                    cap => selection.max_series = cap,
                }
                if !errors.is_empty() {
                    return Err(ConfigError::Findings(errors));
                }
                let extras = extras.into_iter().map(|(_, e)| e).collect();
                (file, selection, findings.warnings, extras)
            }
            None => (
                FileConfig::default(),
                Selection::default(),
                Vec::new(),
                Vec::new(),
            ),
        };
        let ex = &file.exporter;
        let ls = &file.litellm_settings;

        let mut db_url_file = None;
        let url = match (&args.db_url, &args.db_url_file) {
            (Some(u), _) if !u.trim().is_empty() => u.clone(),
            (_, Some(path)) => {
                db_url_file = Some(path.clone());
                std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("--db-url-file {}: {e}", path.display())))?
            }
            _ => {
                return Err(invalid(
                    "no database URL: set --db-url, DATABASE_URL or --db-url-file",
                ))
            }
        };
        let target = db::parse_url(&url)?;

        let listen = parse_listen(
            args.listen_address
                .as_deref()
                .or(ex.listen_address.as_deref())
                .unwrap_or("0.0.0.0:10410"),
        )?;
        let telemetry_path = args
            .telemetry_path
            .clone()
            .or(ex.telemetry_path.clone())
            .unwrap_or_else(|| "/metrics".into());
        if !telemetry_path.starts_with('/')
            || telemetry_path == "/"
            || telemetry_path.starts_with("/-/")
        {
            return Err(invalid(format!(
                "--web.telemetry-path {telemetry_path:?} must start with / and not be / or under /-/"
            )));
        }
        let web_files = crate::web_config::WebFiles {
            config_file: args.web_config_file.clone(),
            bearer_token_file: args.bearer_token_file.clone(),
        };
        let web = std::sync::Arc::new(web_files.load()?);
        let drain_timeout = parse_duration(
            "--web.drain-timeout",
            args.drain_timeout.as_deref().unwrap_or("10s"),
        )?;
        let dur = |flag: &Option<String>, file: &Option<String>, what: &str, default: &str| {
            parse_duration(what, flag.as_deref().or(file.as_deref()).unwrap_or(default))
        };
        let poll_interval = dur(
            &args.poll_interval,
            &ex.poll_interval,
            "--poll-interval",
            "15s",
        )?;
        if poll_interval < Duration::from_millis(100) {
            return Err(invalid("--poll-interval must be at least 100ms"));
        }
        let lateness = dur(&args.lateness, &ex.lateness, "--ledger.lateness", "1h")?;
        let recent = dur(
            &args.recent_window,
            &ex.recent_window,
            "--ledger.recent-window",
            "2m",
        )?;
        if recent > lateness {
            return Err(invalid(
                "--ledger.recent-window must not exceed --ledger.lateness",
            ));
        }
        let growth = args.window_growth.or(ex.window_growth).unwrap_or(4);
        if growth < 2 {
            return Err(invalid("--ledger.window-growth must be at least 2"));
        }
        let statement_timeout = dur(
            &args.statement_timeout,
            &ex.statement_timeout,
            "--db.statement-timeout",
            "15s",
        )?;
        let size = args.pool_size.or(ex.pool_size).unwrap_or(2);
        if !(1..=MAX_POOL_SIZE).contains(&size) {
            return Err(invalid(format!(
                "--db.pool-size must be 1 to {MAX_POOL_SIZE}"
            )));
        }
        let memory_budget = crate::budget::resolve(
            args.memory_budget
                .as_deref()
                .or(ex.memory_budget.as_deref()),
        )
        .map_err(invalid)?;
        let log_level = args.log_level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid(format!(
                "--log.level {log_level:?}: use error, warn, info, debug or trace"
            )));
        }
        let log_format = match args.log_format.as_deref().unwrap_or("logfmt") {
            "logfmt" => LogFormat::Logfmt,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(format!(
                    "--log.format {other:?}: use logfmt or json"
                )))
            }
        };
        let latency = ls
            .prometheus_latency_buckets
            .clone()
            .unwrap_or_else(|| LATENCY_BUCKETS.to_vec());
        check_buckets(&latency)?;
        let end_user = ls
            .enable_end_user_cost_tracking_prometheus_only
            .unwrap_or(false);
        Ok(Config {
            target,
            db_url_file,
            listen,
            telemetry_path,
            web_files,
            web,
            drain_timeout,
            poll_interval,
            log_level,
            log_format,
            state_file: args.state_file.clone().or(ex.state_file.clone()),
            tail: TailConfig {
                lateness,
                recent,
                growth,
                chunk_target: Duration::from_secs(2).min(statement_timeout / 4),
            },
            pool: PoolSettings {
                size,
                statement_timeout,
                connect_timeout: Duration::from_secs(5).min(statement_timeout),
            },
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
        })
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
        let e = serde_yaml::from_str::<FileConfig>("exporter:\n  pol_interval: 1s\n")
            .expect_err("unknown key");
        let msg = suggest(&e.to_string());
        assert!(
            msg.contains("line 2") && msg.ends_with("(did you mean poll_interval?)"),
            "{msg}"
        );
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
    fn unknown_keys_are_rejected() {
        let e = serde_yaml::from_str::<FileConfig>("exporter:\n  pol_interval: 1s\n");
        assert!(e.is_err());
    }
}
