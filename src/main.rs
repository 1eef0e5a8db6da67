//! The binary: parses the command line, sets up logging, runs the exporter (or one of its
//! read-only subcommands) and maps failures to exit codes: 2 for configuration errors, 1 for
//! others.
//! An unreachable database is not an error here: the exporter starts and retries.

use std::process::ExitCode;

use litellm_exporter::cli::{self, BackfillArgs, Command};
use litellm_exporter::config::{self, Config, LogFormat};
use litellm_exporter::Ended;
use litellm_exporter::{backfill, db};

fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,litellm_exporter={level},litellm_exporter::http=warn"
    ));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `check-config FILE`: the same validation as at start, of the file and of the flags given
/// before the subcommand (the web config and bearer token files among them), then a summary of
/// what would be exported and served. Every problem is one line, in line order. Without a
/// database URL (flags, or the file's `general_settings.database_url`), a stand-in.
fn check_config(run: &litellm_exporter::cli::RunArgs, file: &std::path::Path) -> ExitCode {
    let mut args = run.clone();
    args.config_file = Some(file.to_path_buf());
    match Config::check(&args) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                println!("warning: {w}");
            }
            for line in &cfg.file_report {
                println!("{line}");
            }
            if let Some(cap) = cfg.selection.max_series {
                println!("Series per family: at most {cap} (beyond it: one \"other\" series; gauges: dropped).");
            }
            println!("{}: valid. Exported families and labels:", file.display());
            for line in cfg.selection.summary() {
                println!("  {line}");
            }
            match &cfg.memory_budget {
                Some(b) => println!(
                    "Memory budget: {} ({}); `litellm-exporter plan` estimates what a database needs under it.",
                    litellm_exporter::budget::human(b.bytes),
                    b.source
                ),
                None => println!("Memory budget: none (no --memory.budget, no container memory limit); `litellm-exporter plan` estimates what a database needs."),
            }
            let files = [&args.web_config_file, &args.bearer_token_file];
            let names: Vec<String> = files
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            if !names.is_empty() {
                println!(
                    "{}: valid. Serving {}.",
                    names.join(", "),
                    cfg.web.summary()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `plan`: the same configuration as a live run, then one read of the spend log.
fn run_plan(run: &litellm_exporter::cli::RunArgs, rt: &tokio::runtime::Runtime) -> ExitCode {
    let cfg = match Config::build(run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("litellm-exporter plan: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging("warn", cfg.log_format);
    match rt.block_on(litellm_exporter::plan::run(&cfg)) {
        Ok(plan) => {
            print!("{}", plan.report(&cfg));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("litellm-exporter plan: {}", db::redact(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

/// `backfill`: the same configuration as a live run (so the same series), then the history.
fn run_backfill(
    run: &litellm_exporter::cli::RunArgs,
    a: &BackfillArgs,
    rt: &tokio::runtime::Runtime,
) -> ExitCode {
    let cfg = match Config::build(run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("litellm-exporter backfill: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log_level, cfg.log_format);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let opts = (|| -> Result<backfill::Options, String> {
        let ms = |what: &str, s: &str| {
            config::parse_duration(what, s)
                .map(|d| d.as_millis() as i64)
                .map_err(|e| e.to_string())
        };
        let step_ms = ms("--step", &a.step)?;
        let heartbeat_ms = match a.heartbeat.as_deref() {
            None => backfill::Options::default_heartbeat(step_ms),
            Some("0") => 0,
            Some(h) => ms("--heartbeat", h)?,
        };
        Ok(backfill::Options {
            from_ms: backfill::parse_time(&a.from, now_ms).map_err(|e| format!("--from {e}"))?,
            to_ms: backfill::parse_time(&a.to, now_ms).map_err(|e| format!("--to {e}"))?,
            step_ms,
            heartbeat_ms,
            file_ms: ms("--file-span", &a.file_span)?,
            out: a.out.clone(),
            labels: a
                .labels
                .iter()
                .map(|l| backfill::parse_label(l).map_err(|e| format!("--label {e}")))
                .collect::<Result<_, _>>()?,
        })
    })()
    .and_then(|o| o.validate().map(|()| o));
    let opts = match opts {
        Ok(o) => o,
        Err(e) => {
            eprintln!("litellm-exporter backfill: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(backfill::run(&cfg, &opts)) {
        Ok(s) => {
            println!(
                "Wrote {} samples in {} files ({} rows, {} label classes, {} steps) to {}.",
                s.samples,
                s.files.len(),
                s.rows,
                s.classes,
                s.steps,
                opts.out.display()
            );
            println!("Next: {}", backfill::promtool_command(&opts.out));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "litellm-exporter backfill: {}",
                db::redact(&format!("{e:#}"))
            );
            ExitCode::from(1)
        }
    }
}

/// Caps glibc's malloc arenas at one, before any thread exists (glibc fixes the limit when a second
/// thread first allocates). By default each thread that allocates may get its own arena (up to 8
/// per core): a render's helper thread, tokio's workers and the threads `block_in_place` starts all
/// hold parts of the exposition, and what one arena frees another cannot reuse, so the resident
/// memory wandered with nothing leaking: in the 10-minute soak (scripts/soak), once steady, the
/// minute medians of RSS spanned 84-89 MiB by default and 79-85 MiB with two arenas (a step in the
/// judged last minute), but 78-80 MiB in two runs with one arena, for the same CPU time and render
/// durations: the exporter's threads are few and allocate little outside renders, so they seldom
/// wait for the one arena's lock.
/// MALLOC_ARENA_MAX (or GLIBC_TUNABLES' glibc.malloc.arena_max) in the environment wins: glibc
/// reads it at start-up and `mallopt` would overwrite it, so an operator's setting skips this.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_user = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
        if !set_by_user {
            // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}

/// For the commands that only print: a reader that stops early (`check-config FILE | head`) ends
/// the process quietly, as it ends other Unix tools, instead of a panic in `println!`. The server
/// keeps Rust's default (SIGPIPE ignored): a scraper hanging up must never kill it.
fn end_quietly_on_closed_pipe() {
    // SAFETY: only the process-wide disposition of SIGPIPE changes; no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("litellm-exporter: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Backfill(args)) = &cli.command {
        return run_backfill(&cli.run, args, &runtime);
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        end_quietly_on_closed_pipe();
        return check_config(&cli.run, file);
    }
    if let Some(Command::Plan) = &cli.command {
        end_quietly_on_closed_pipe();
        return run_plan(&cli.run, &runtime);
    }
    let cfg = match Config::build(&cli.run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("litellm-exporter: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log_level, cfg.log_format);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if let Some(p) = cfg.spend_logs_partitioning {
        // Recorded for now: the spend log is read the same way either way.
        tracing::info!(
            use_spend_logs_partitioning = p,
            "The proxy's config says how its spend log is partitioned."
        );
    }
    match &cfg.state_file {
        None => tracing::warn!("No --state.file: after a restart, counters are rebuilt from the rows still in the database, so rows deleted by LiteLLM's retention job are no longer included."),
        // Found now rather than at the first save, after a catch-up of minutes.
        Some(path) => {
            if let Err(e) = litellm_exporter::state::prepare_dir(path) {
                eprintln!("litellm-exporter: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let run = async {
        let reload = litellm_exporter::sighup_reload();
        litellm_exporter::run(cfg, shutdown_signal(), reload).await
    };
    match runtime.block_on(run) {
        // A shutdown is a success even without the final state save: the periodic one stands.
        Ok(Ended::Shutdown | Ended::ShutdownWithoutFinalSave) => ExitCode::SUCCESS,
        Ok(Ended::RefreshLoopDied) => ExitCode::from(1),
        Err(e) => {
            eprintln!("litellm-exporter: cannot serve: {e}");
            ExitCode::from(2)
        }
    }
}
