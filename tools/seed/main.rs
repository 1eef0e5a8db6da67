//! `litellm-seed`: writes generated LiteLLM traffic into a THROWAWAY database, for the demo, the
//! integration tests, the soak and the benchmarks. It is a separate binary so that the exporter's
//! library and release binary contain no code that writes to a database; the Dockerfile builds
//! and ships only `litellm-exporter`. It owns its command line and session here; what it writes
//! is `seed.rs`.

mod seed;

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "litellm-seed",
    version = litellm_exporter::LONG_VERSION,
    about = "Write generated LiteLLM traffic into a THROWAWAY database (demo, tests, benchmarks). \
             Never point this at a real LiteLLM database: it inserts rows.",
    long_about = None
)]
struct Args {
    /// The throwaway database's PostgreSQL URL (the exporter's forms: Prisma-style ?schema= and
    /// sslmode are understood).
    #[arg(long = "db-url", env = "DATABASE_URL", hide_env_values = true)]
    db_url: String,
    /// Spend-log rows to write.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Spread the rows over this many days before now.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Spread the rows over this many hours before now instead, with new request ids on every
    /// run (a benchmark's last hour of traffic on a database seeded before).
    #[arg(long)]
    hours: Option<u32>,
    #[arg(long, default_value_t = 20)]
    teams: u32,
    #[arg(long, default_value_t = 200)]
    keys: u32,
    #[arg(long, default_value_t = 100)]
    users: u32,
    #[arg(long, default_value_t = 3)]
    orgs: u32,
    #[arg(long, default_value_t = 50)]
    customers: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// After the history, keep inserting live traffic at this many rows per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop live traffic after this long (e.g. 10m); forever if not given.
    #[arg(long)]
    duration: Option<String>,
}

async fn run(a: &Args) -> anyhow::Result<()> {
    let target = litellm_exporter::db::parse_url(&a.db_url)?;
    // A plain session, not the exporter's pool: the pool's sessions are read-only.
    let (client, conn) = target.config.connect(target.tls.connector.clone()).await?;
    tokio::spawn(conn);
    let opts = seed::SeedOptions {
        rows: a.rows,
        days: a.days,
        hours: a.hours,
        teams: a.teams,
        keys: a.keys,
        users: a.users,
        orgs: a.orgs,
        customers: a.customers,
        seed: a.seed,
        ..Default::default()
    };
    let universe = seed::seed_entities(&client, &opts).await?;
    let mut rows_opts = opts.clone();
    if a.hours.is_some() {
        // Recent traffic for a database seeded before: the same entities, new request ids on
        // every run (like --rate traffic), so a second run adds rows instead of colliding.
        rows_opts.seed ^= std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    let n = seed::seed_spend_logs(&client, &rows_opts, &universe).await?;
    tracing::info!(rows = n, "Seeded spend logs.");
    if let Some(rate) = a.rate {
        let duration = a
            .duration
            .as_deref()
            .map(|d| litellm_exporter::config::parse_duration("--duration", d))
            .transpose()?;
        tracing::info!(rate, "Writing live traffic.");
        seed::run_traffic(&client, &opts, &universe, rate, duration).await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Progress lines on stderr, logfmt like the exporter's (scripts/demo and the deploy test
    // wait for "Seeded spend logs" in this log).
    {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("warn,litellm_seed=info"))
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("litellm-seed: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = litellm_exporter::db::redact(&format!("{e:#}"));
            eprintln!("litellm-seed: {msg}");
            ExitCode::from(1)
        }
    }
}
