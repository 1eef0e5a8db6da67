//! litellm-exporter: exact, cheap Prometheus metrics for LiteLLM, read from its PostgreSQL
//! database, next to an unmodified proxy.
//!
//! Map (ARCHITECTURE.md has the long form):
//! - `cli`, `config`: flags, environment and YAML into one validated `Config`.
//! - `db`, `schema`, `sql`: the pool and its read-only sessions, schema detection, every query.
//! - `ledger`: spend-log rows into counters and histograms, each row counted exactly once.
//! - `entities`: budget, limit and count gauges rebuilt from the entity tables.
//! - `catalogue`, `render`: metric names and label sets; the text exposition.
//! - `refresh`: the loop that reads, renders and publishes; `http`: serving it (TLS, auth,
//!   drain), `web_config`: the web configuration file and its reload, `gzip`: the compressed
//!   exposition, made once per refresh.
//! - `selfmetrics`, `state`: the exporter's own metrics; the state file.
//! - `budget`, `ledger::fold`, `plan`: the memory budget, the rule that keeps the label classes
//!   inside it, and the `plan` subcommand's estimates for a database.
//!
//! Nothing here writes to a database: the traffic generator the demo, tests and benchmarks use is
//! its own binary, `litellm-seed` (tools/seed), which only uses this library's URL parsing.

pub mod backfill;
pub mod budget;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod gzip;
pub mod http;
pub mod ledger;
pub mod pem;
pub mod plan;
pub mod refresh;
pub mod render;
pub mod schema;
pub mod selection;
pub mod selfmetrics;
pub mod sql;
pub mod state;
pub mod web_config;

use std::sync::Arc;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("LITELLM_EXPORTER_REVISION");
pub const RUSTC: &str = env!("LITELLM_EXPORTER_RUSTC");
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("LITELLM_EXPORTER_REVISION"),
    ", ",
    env!("LITELLM_EXPORTER_RUSTC"),
    ")"
);

/// A counter bumped on every reload request (SIGHUP): each part that re-reads a file on reload
/// watches it. `sighup_reload` makes one; the sender lives as long as the process, so
/// `changed()` never fails.
pub type Reload = tokio::sync::watch::Receiver<u64>;

/// A reload channel whose sender is bumped on every SIGHUP received by the process.
pub fn sighup_reload() -> Reload {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("Cannot listen for SIGHUP; files are only read at start.");
            // Keep the sender alive so that watchers wait instead of seeing a closed channel.
            std::future::pending::<()>().await;
            drop(tx);
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the database URL file and the web configuration.");
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

/// How a run of the exporter ended (`main` maps it to an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shut down on request; the refresh loop stopped and saved the state file.
    Shutdown,
    /// Shut down on request, but the refresh loop did not stop within `--web.drain-timeout`: it
    /// was abandoned without its final state save (the last periodic one stands).
    ShutdownWithoutFinalSave,
    /// The refresh loop stopped by itself (it panicked, a bug): the process should exit
    /// non-zero so that its supervisor restarts it.
    RefreshLoopDied,
}

/// Runs the exporter until `shutdown` resolves: binds the listener first (so that a bad address
/// fails at once), then starts the refresh loop and serves. On shutdown the listener closes and
/// in-flight scrapes finish (for at most `--web.drain-timeout`) before it returns.
/// `reload` ticks when the operator asks for files to be re-read (SIGHUP).
pub async fn run(
    cfg: config::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    reload: Reload,
) -> Result<Ended, std::io::Error> {
    let shared = Arc::new(refresh::Shared::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let web = http::WebOptions {
        addr: cfg.listen,
        telemetry_path: cfg.telemetry_path.clone(),
        web: Arc::new(web_config::CurrentWeb::new(
            cfg.web_files.clone(),
            cfg.web.clone(),
        )),
        drain_timeout: cfg.drain_timeout,
    };
    let listen = cfg.listen;
    let (addr, server) =
        http::serve(web, shared.clone(), reload.clone(), http_stop).map_err(|e| {
            // Named with the address: "Address already in use" alone leaves the operator to
            // guess which one, and how to choose another.
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {listen}: {e} (choose another with --web.listen-address)"
                ),
            )
        })?;
    tracing::info!(
        address = %addr,
        path = %cfg.telemetry_path,
        tls = cfg.web.tls.is_some(),
        auth = cfg.web.auth_required(),
        "Serving metrics."
    );
    let drain_timeout = cfg.drain_timeout;
    let refresher = refresh::Refresher::new(cfg, shared);
    let mut loop_task = tokio::spawn(refresher.run(stop_rx, reload.clone()));
    let server_task = tokio::spawn(server);
    let mut ended = tokio::select! {
        _ = shutdown => Ended::Shutdown,
        // The loop only ends on shutdown; ending earlier means it panicked. Serving frozen
        // values forever would hide that, so the process exits and its supervisor restarts it.
        r = &mut loop_task => {
            tracing::error!(error = ?r.err(), "The refresh loop stopped unexpectedly.");
            Ended::RefreshLoopDied
        }
    };
    tracing::info!("Shutting down.");
    // One deadline for the whole shutdown: the HTTP drain ends by it on its own; the refresh
    // loop normally finishes its cycle and saves the state file well before it, but a database
    // that stopped answering (a frozen server does not enforce statement_timeout) must not keep
    // the process alive until the orchestrator kills it.
    let deadline = tokio::time::Instant::now() + drain_timeout;
    let _ = stop_tx.send(true);
    let _ = server_task.await;
    if ended == Ended::Shutdown
        && tokio::time::timeout_at(deadline, &mut loop_task)
            .await
            .is_err()
    {
        tracing::warn!("The refresh loop did not stop within --web.drain-timeout (a database that stopped answering, or the render or state save of a very large ledger); exiting without the final state save (the last periodic one stands).");
        loop_task.abort();
        ended = Ended::ShutdownWithoutFinalSave;
    }
    Ok(ended)
}
