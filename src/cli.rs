//! The command line: flags (each also readable from the environment) and subcommands. Raw
//! values only; `config` validates them and merges the YAML file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_PORT: u16 = 10410;

#[derive(Debug, Parser)]
#[command(
    name = "litellm-exporter",
    version = crate::LONG_VERSION,
    about = "Exact, cheap Prometheus metrics for LiteLLM, read from its PostgreSQL database.",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The process's command line, parsed; on a usage error clap prints it and exits with code 2.
/// Here rather than in main.rs so that `clap` stays in this module (ARCHITECTURE.md's invariants).
pub fn parse() -> Cli {
    Cli::parse()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the ledger's counters and histograms for a past time range as OpenMetrics files
    /// for `promtool tsdb create-blocks-from openmetrics` (see the README's "Backfill").
    /// Exporter flags such as --config.file go before the subcommand, so that labels match.
    Backfill(BackfillArgs),
    /// Validate a configuration file: every problem is one line naming its position, exit code 2;
    /// a valid file prints what will be exported. Exporter flags given before the subcommand
    /// are checked with it, --web.config.file and --web.bearer-token-file included.
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
    /// Before running against a database: read its spend log once (like a cold start, in small
    /// read-only chunks) and print what the exporter will need there under the given flags and
    /// --config.file: label combinations, series per family, /metrics size, resident memory,
    /// state-file size, and what the memory budget folds. Runs in little memory itself.
    Plan,
}

#[derive(Debug, Default, Clone, Args)]
pub struct RunArgs {
    /// LiteLLM's PostgreSQL URL (Prisma-style parameters such as ?schema= are understood).
    #[arg(
        long = "db-url",
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub db_url: Option<String>,
    /// A file holding the database URL (a mounted secret); used when --db-url is not given.
    /// Re-read on SIGHUP, so that a rotated password is picked up without a restart.
    #[arg(
        long = "db-url-file",
        env = "LITELLM_EXPORTER_DB_URL_FILE",
        global = true
    )]
    pub db_url_file: Option<PathBuf>,
    /// Address to serve metrics on [default: 0.0.0.0:10410].
    #[arg(
        long = "web.listen-address",
        env = "LITELLM_EXPORTER_WEB_LISTEN_ADDRESS"
    )]
    pub listen_address: Option<String>,
    /// Prometheus exporter-toolkit web configuration (TLS, basic auth, response headers);
    /// re-read on SIGHUP. See the README's Security section.
    #[arg(long = "web.config.file", env = "LITELLM_EXPORTER_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,
    /// A file holding a bearer token that admits requests to the telemetry path
    /// (`Authorization: Bearer <token>`); re-read on SIGHUP.
    #[arg(
        long = "web.bearer-token-file",
        env = "LITELLM_EXPORTER_WEB_BEARER_TOKEN_FILE"
    )]
    pub bearer_token_file: Option<PathBuf>,
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits
    /// anyway [default: 10s].
    #[arg(long = "web.drain-timeout", env = "LITELLM_EXPORTER_WEB_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// Path under which to expose metrics [default: /metrics].
    #[arg(
        long = "web.telemetry-path",
        env = "LITELLM_EXPORTER_WEB_TELEMETRY_PATH"
    )]
    pub telemetry_path: Option<String>,
    /// How often to read new spend-log rows and entity tables, e.g. 500ms, 15s, 2m [default: 15s].
    #[arg(long = "poll-interval", env = "LITELLM_EXPORTER_POLL_INTERVAL")]
    pub poll_interval: Option<String>,
    /// YAML configuration file (see deploy/config.example.yaml).
    #[arg(long = "config.file", env = "LITELLM_EXPORTER_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(long = "log.level", env = "LITELLM_EXPORTER_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// logfmt or json [default: logfmt].
    #[arg(long = "log.format", env = "LITELLM_EXPORTER_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// File where counters and the reading position are saved, so that a restart continues them
    /// even after LiteLLM's retention job deleted rows. Put it on a volume.
    #[arg(long = "state.file", env = "LITELLM_EXPORTER_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// How late a row may be committed or rewritten (after its startTime) and still be counted
    /// [default: 1h].
    #[arg(long = "ledger.lateness", env = "LITELLM_EXPORTER_LEDGER_LATENESS")]
    pub lateness: Option<String>,
    /// Narrowest window the polls re-read, on every poll; wider windows up to the lateness
    /// window are re-read less often (see --ledger.window-growth) [default: 2m].
    #[arg(
        long = "ledger.recent-window",
        env = "LITELLM_EXPORTER_LEDGER_RECENT_WINDOW"
    )]
    pub recent_window: Option<String>,
    /// Each wider window the polls re-read is N times wider, and re-read N times less often,
    /// than the one inside it, up to the lateness window [default: 4].
    #[arg(
        long = "ledger.window-growth",
        env = "LITELLM_EXPORTER_LEDGER_WINDOW_GROWTH"
    )]
    pub window_growth: Option<u32>,
    /// statement_timeout for every query [default: 15s].
    #[arg(
        long = "db.statement-timeout",
        env = "LITELLM_EXPORTER_DB_STATEMENT_TIMEOUT"
    )]
    pub statement_timeout: Option<String>,
    /// Memory the exporter may use, e.g. 1GiB, 512Mi; past it, new label combinations fold into
    /// "other" series (exact totals, fewer series). "none" turns the guard off [default: 80% of
    /// the container's memory limit, none without one].
    #[arg(long = "memory.budget", env = "LITELLM_EXPORTER_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
    /// Database connections, 1 to 4 [default: 2].
    #[arg(long = "db.pool-size", env = "LITELLM_EXPORTER_DB_POOL_SIZE")]
    pub pool_size: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// First instant: YYYY-MM-DD (midnight UTC), an RFC 3339 time, now-<duration> (now-30d).
    #[arg(long)]
    pub from: String,
    /// Last instant, same forms as --from.
    #[arg(long, default_value = "now")]
    pub to: String,
    /// Time between samples (Prometheus's scrape interval for the past), whole seconds.
    #[arg(long, default_value = "1m")]
    pub step: String,
    /// Directory for the OpenMetrics files (one per --file-span).
    #[arg(long)]
    pub out: PathBuf,
    /// A label Prometheus adds when it scrapes the exporter, added to every series so that
    /// backfilled and live samples are one series: --label job=litellm --label instance=HOST:PORT.
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// Write an unchanged series again after this long, below Prometheus's 5 min lookback, so
    /// that every instant sees it; 0 writes changes only [default: the largest multiple of
    /// --step below 5m].
    #[arg(long)]
    pub heartbeat: Option<String>,
    /// Time covered by one output file (promtool reads one file per run) [default: 1d].
    #[arg(long = "file-span", default_value = "1d")]
    pub file_span: String,
}
