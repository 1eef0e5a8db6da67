//! The database connection: parsing LiteLLM's `DATABASE_URL` (Prisma-style parameters included)
//! without ever printing its password, a small pool whose sessions are read-only, bounded by
//! `statement_timeout` and named `litellm-exporter`, and the read transaction every query runs in.

use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::ledger::read::GroupError;

pub const APPLICATION_NAME: &str = "litellm-exporter";
pub const MAX_POOL_SIZE: usize = 4;

/// Query parameters that Prisma (LiteLLM's ORM) accepts in `DATABASE_URL` but libpq-style parsers
/// reject. They are dropped, except `schema`, which becomes the session's search_path.
const PRISMA_ONLY: &[&str] = &[
    "schema",
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "socket_timeout",
    "statement_cache_size",
    "sslaccept",
    "sslidentity",
    "sslpassword",
];

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("database URL {0}: {1}")]
    Invalid(String, String),
}

/// A parsed database target: the driver config and a printable form without the password.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub display: String,
    pub search_path: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// Replaces the password of a URL (`scheme://user:password@host/...`) or of a key/value
/// connection string (`password=...`) with `***`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => format!("{path}?{}", redact_pairs(query, "&")),
            None => tail.to_string(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    redact_pairs(url.trim(), " ")
}

/// `k=v` pairs joined by `sep`, with the value of `password` replaced.
fn redact_pairs(pairs: &str, sep: &str) -> String {
    pairs
        .split(sep)
        .map(|kv| {
            if kv
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("password=")
            {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(sep)
}

pub fn parse_url(url: &str) -> Result<Target, UrlError> {
    let url = url.trim();
    let display = redact(url);
    let bad = |why: &str| UrlError::Invalid(display.clone(), why.to_string());
    if url.is_empty() {
        return Err(bad("is empty"));
    }
    let mut search_path = None;
    let cleaned = if url.contains("://") {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut kept = Vec::new();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if k == "schema" {
                search_path = Some(v.to_string());
            } else if !PRISMA_ONLY.contains(&k) {
                kept.push(kv);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        url.to_string()
    };
    // The driver's own message can quote the input; it is replaced by a generic reason.
    let config: tokio_postgres::Config = cleaned
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(&describe_parse_error(&e.to_string())))?;
    if config.get_hosts().is_empty() {
        return Err(bad("names no host"));
    }
    Ok(Target {
        config,
        display,
        search_path,
    })
}

fn describe_parse_error(msg: &str) -> String {
    // Keep only the part of the driver's message before any quoted input.
    let generic = msg
        .split('`')
        .next()
        .unwrap_or(msg)
        .trim()
        .trim_end_matches(':');
    format!("cannot be parsed ({generic})")
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
}

/// The pool: at most `MAX_POOL_SIZE` sessions, each read-only with a statement timeout. Sessions
/// are opened lazily, so creating the pool never fails because the database is down. JIT is off:
/// compiling the wide aggregate of the start-up read costs more than running it (measured: 370 ms
/// of compilation per 1,400-row chunk).
pub fn pool(target: &Target, s: &PoolSettings) -> Pool {
    let mut cfg = target.config.clone();
    cfg.application_name(APPLICATION_NAME);
    cfg.connect_timeout(s.connect_timeout);
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let timeout_ms = s.statement_timeout.as_millis().max(1);
    let mut setup = format!(
        "SET statement_timeout = {timeout_ms}; \
         SET lock_timeout = {timeout_ms}; \
         SET idle_in_transaction_session_timeout = {}; \
         SET default_transaction_read_only = on; \
         SET jit = off; \
         SET application_name = '{APPLICATION_NAME}';",
        timeout_ms * 2
    );
    if let Some(sp) = &target.search_path {
        // Quoted as an identifier; a quote inside is doubled.
        setup.push_str(&format!(
            " SET search_path = \"{}\";",
            sp.replace('"', "\"\"")
        ));
    }
    Pool::builder(mgr)
        .max_size(s.size.clamp(1, MAX_POOL_SIZE))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(s.connect_timeout))
        .create_timeout(Some(s.connect_timeout))
        .recycle_timeout(Some(s.connect_timeout))
        .post_create(Hook::async_fn(move |client, _| {
            let setup = setup.clone();
            Box::pin(async move {
                client
                    .batch_execute(&setup)
                    .await
                    .map_err(HookError::Backend)?;
                // PostgreSQL 14+ would otherwise cache each LATERAL of the projection keyed by the
                // row's metadata JSON: hashing it costs more than computing (measured 42 s vs
                // 18.5 s for a million rows). The setting does not exist before 14.
                let version: i32 = client
                    .query_one("SELECT current_setting('server_version_num')::int", &[])
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(HookError::Backend)?;
                if version >= 140_000 {
                    client
                        .batch_execute("SET enable_memoize = off")
                        .await
                        .map_err(HookError::Backend)?;
                }
                Ok(())
            })
        }))
        .build()
        .expect("pool settings are valid: a runtime and a size are always given")
}

/// A REPEATABLE READ, READ ONLY transaction: one consistent snapshot per read.
pub async fn read_tx(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("query failed: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Group(GroupError),
    #[error("LiteLLM table {0} is missing (not a LiteLLM database, or a migration is running)")]
    MissingTable(&'static str),
    /// The client-side bound on a refresh step: a frozen server or a silent network cannot
    /// enforce `statement_timeout`, so the exporter gives up on its own clock.
    #[error("no answer from the database within {0:?} (server frozen or network down?)")]
    Timeout(std::time::Duration),
}

/// A server error inside a grouped read is a query error like any other, so that its SQLSTATE
/// decides the kind (a recovery conflict during the catch-up is retried) and the log shows it.
impl From<GroupError> for DbError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Db(e) => DbError::Query(e),
            other => DbError::Group(other),
        }
    }
}

/// tokio-postgres prints "db error" for server errors; the server's own message says more.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

impl DbError {
    /// A bounded value for the `kind` label of `litellm_exporter_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::Pool(_) => "connect",
            DbError::Query(e) => match e.code() {
                Some(c) if *c == tokio_postgres::error::SqlState::QUERY_CANCELED => "timeout",
                Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE => "schema",
                Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_COLUMN => "schema",
                // A hot standby cancels reads that conflict with replay with one of these two.
                Some(c)
                    if *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED =>
                {
                    "conflict"
                }
                Some(_) => "query",
                None => "connect",
            },
            DbError::Group(_) => "query",
            DbError::MissingTable(_) => "schema",
            DbError::Timeout(_) => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgresql://llm:s3cret@db:5432/litellm?schema=public"),
            "postgresql://llm:***@db:5432/litellm?schema=public"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(
            redact("postgres://u@h/d?password=x&sslmode=require"),
            "postgres://u@h/d?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
    }

    #[test]
    fn accepts_prisma_urls() {
        let t = parse_url("postgresql://u:pw@db:5432/litellm?schema=litellm&connection_limit=5")
            .expect("valid");
        assert_eq!(t.search_path.as_deref(), Some("litellm"));
        assert_eq!(t.config.get_dbname(), Some("litellm"));
        assert!(!t.display.contains("pw"));
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in [
            "postgresql://u:topsecret@db:notaport/x",
            "postgresql://u:topsecret@db/x?bogus=1",
            "",
        ] {
            let e = parse_url(url).expect_err(url).to_string();
            assert!(!e.contains("topsecret"), "{e}");
        }
    }
}
