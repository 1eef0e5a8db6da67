//! The database connection: parsing LiteLLM's `DATABASE_URL` (Prisma-style parameters included)
//! without ever printing its password, TLS (`tls`: libpq's sslmode, Prisma's spelling), a small
//! pool whose sessions are read-only, bounded by `statement_timeout` and named
//! `litellm-exporter`, and the read transaction every query runs in. `database::Database` is the
//! database as the refresh loop reads it now: its URL (swapped on SIGHUP), pool and schema memory.

pub mod database;
pub mod give_way;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sha2::{Digest, Sha256};

use crate::selfmetrics::ErrorKind;

pub const APPLICATION_NAME: &str = "litellm-exporter";
pub const MAX_POOL_SIZE: usize = 4;

/// Query parameters that Prisma (LiteLLM's ORM) accepts in `DATABASE_URL` but libpq-style parsers
/// reject. They are dropped, except `schema`, which becomes the session's search_path. Prisma's
/// TLS parameters are read by `tls`.
const PRISMA_ONLY: &[&str] = &[
    "schema",
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "socket_timeout",
    "statement_cache_size",
];

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("database URL {0}: {1}")]
    Invalid(String, String),
}

/// A parsed database target: the driver config, TLS, and a printable form without the password.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub display: String,
    pub search_path: Option<String>,
    pub tls: tls::Tls,
    /// SHA-256 of the URL text: tells whether a re-read URL file changed, without keeping or
    /// comparing the secret itself.
    pub url_digest: [u8; 32],
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
        // The user info ends at the last '@' before the query; a raw '/' or '@' in a password
        // (which should have been percent-encoded) must not end it early and leak the rest.
        let before_query = rest.find('?').unwrap_or(rest.len());
        let at = rest[..before_query].rfind('@').or_else(|| rest.rfind('@'));
        let (userinfo, after) = match at {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (host, tail) = match after.find(['/', '?']) {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        let authority = match userinfo {
            Some(ui) => match ui.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{ui}@{host}"),
            },
            None => host.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => format!(
                "{path}?{}",
                query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                            format!("{k}=***")
                        }
                        _ => kv.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            ),
            None => tail.to_string(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    match kv_pairs(url) {
        Some(pairs) => join_pairs(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    if k == "password" {
                        (k, "***".to_string())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        ),
        // Not parseable: whatever follows the word "password" may be it.
        None => match url.to_ascii_lowercase().find("password") {
            Some(i) => format!("{}password=***", &url[..i]),
            None => url.to_string(),
        },
    }
}

/// A libpq key/value connection string (`host=h user='a b'`) as pairs; None if malformed.
fn kv_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// Pairs back into a key/value string, quoting the values that need it.
fn join_pairs(pairs: Vec<(String, String)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| {
            if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
                format!("{k}={v}")
            } else {
                format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a URL or key/value string; TLS settings use libpq's `PGSSLMODE`/`PGSSLROOTCERT`
/// from the environment when the URL has none.
pub fn parse_url(url: &str) -> Result<Target, UrlError> {
    parse_url_with(url, &|k| std::env::var(k).ok())
}

pub fn parse_url_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, UrlError> {
    let url = url.trim();
    let display = redact(url);
    let bad = |why: &str| UrlError::Invalid(display.clone(), why.to_string());
    if url.is_empty() {
        return Err(bad("is empty"));
    }
    let mut search_path = None;
    let mut tls_params: Vec<(String, String)> = Vec::new();
    let cleaned = if url.contains("://") {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut kept = Vec::new();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decoded = || {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            if k == "schema" {
                search_path = Some(decoded());
            } else if tls::PARAMS.contains(&k) {
                tls_params.push((k.to_string(), decoded()));
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
        let pairs = kv_pairs(url).ok_or_else(|| bad("cannot be parsed (key=value pairs)"))?;
        let (tls_pairs, rest): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .partition(|(k, _)| tls::PARAMS.contains(&k.as_str()));
        tls_params = tls_pairs;
        join_pairs(rest)
    };
    // The driver's own message can quote the input; it is replaced by a generic reason.
    let mut config: tokio_postgres::Config = cleaned
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(&describe_parse_error(&e.to_string())))?;
    if config.get_hosts().is_empty() {
        return Err(bad("names no host"));
    }
    let tls = tls::Settings::from_params(&tls_params, env)
        .and_then(|s| tls::build(&s))
        .map_err(|e| bad(&e))?;
    config.ssl_mode(tls.ssl_mode);
    Ok(Target {
        config,
        display,
        search_path,
        tls,
        url_digest: Sha256::digest(url.as_bytes()).into(),
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
/// the catch-up's chunk statements cross the JIT cost threshold, and compiling a statement costs
/// more than it saves on a filtered scan that ships columns (the former SQL projection spent 370 ms
/// compiling per 1,400-row chunk).
pub fn pool(target: &Target, s: &PoolSettings) -> Pool {
    let mut cfg = target.config.clone();
    cfg.application_name(APPLICATION_NAME);
    cfg.connect_timeout(s.connect_timeout);
    let mgr = Manager::from_config(
        cfg,
        target.tls.connector.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let timeout_ms = s.statement_timeout.as_millis().max(1);
    let mut setup = crate::sql::fill(
        crate::sql::SESSION,
        &[
            ("timeout_ms", &timeout_ms.to_string()),
            ("idle_ms", &(timeout_ms * 2).to_string()),
            ("application_name", APPLICATION_NAME),
        ],
    );
    if let Some(sp) = &target.search_path {
        // Quoted as an identifier; a quote inside is doubled.
        setup.push_str(&crate::sql::fill(
            crate::sql::SESSION_SEARCH_PATH,
            &[("schema", &sp.replace('"', "\"\""))],
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
    #[error("cannot get a database connection: {}", describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("query failed: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("LiteLLM table {0} is missing (not a LiteLLM database, or a migration is running)")]
    MissingTable(&'static str),
    /// The client-side bound on a refresh step: a frozen server or a silent network cannot
    /// enforce `statement_timeout`, so the exporter gives up on its own clock.
    #[error("no answer from the database within {0:?} (server frozen or network down?)")]
    Timeout(std::time::Duration),
    /// A spend-log read cancelled to let a waiting session (LiteLLM's partition maintenance) go
    /// ahead, too many times in a row (`give_way`).
    #[error(
        "the spend-log read gave way to other sessions' locks {} times in a row",
        give_way::MAX_TRIES
    )]
    GaveWay,
    /// LiteLLM's partitioning script moved the spend log aside (or the old table was dropped):
    /// the reads must be planned again for the tables there are now.
    #[error("the spend log's tables changed (LiteLLM_SpendLogs_legacy appeared or went)")]
    SpendLogReplaced,
}

/// The driver error inside a pool error, if any.
fn pool_cause(e: &deadpool_postgres::PoolError) -> Option<&tokio_postgres::Error> {
    match e {
        deadpool_postgres::PoolError::Backend(e)
        | deadpool_postgres::PoolError::PostCreateHook(HookError::Backend(e)) => Some(e),
        _ => None,
    }
}

fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match pool_cause(e) {
        Some(e) => describe(e),
        None => e.to_string(),
    }
}

/// tokio-postgres prints "db error" for server errors; the server's own message says more. A
/// TLS failure is named by the check that failed. No part of it quotes the URL.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(f) = tls::classify(e) {
        return f.to_string();
    }
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.code().code(), db.message());
            // pg_hba.conf refuses the session because it is not encrypted (hostssl only).
            if db.message().contains("no encryption") || db.message().contains("SSL off") {
                s.push_str(
                    " (the server accepts only TLS connections: set sslmode=require or stronger)",
                );
            }
            // LiteLLM's partitioning scripts replace the spend-log table; a new table carries
            // none of the old one's grants.
            if *db.code() == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
                && db.message().contains("LiteLLM_")
            {
                s.push_str(
                    " (grant the exporter's role read access again: run sql/setup/readonly_role.sql; a table LiteLLM replaced, as its spend-log partitioning scripts do, keeps none of the old grants)",
                );
            }
            s
        }
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
    /// What went wrong, for the `kind` label of `litellm_exporter_errors_total`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbError::Pool(p) => match pool_cause(p) {
                Some(e) => Self::driver_kind(e),
                None => ErrorKind::Connect,
            },
            DbError::Query(e) => Self::driver_kind(e),
            DbError::MissingTable(_) => ErrorKind::Schema,
            DbError::Timeout(_) => ErrorKind::Timeout,
            DbError::GaveWay => ErrorKind::Locks,
            DbError::SpendLogReplaced => ErrorKind::Schema,
        }
    }

    fn driver_kind(e: &tokio_postgres::Error) -> ErrorKind {
        if let Some(f) = tls::classify(e) {
            return f.kind();
        }
        match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::QUERY_CANCELED => ErrorKind::Timeout,
            Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE => ErrorKind::Schema,
            Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_COLUMN => ErrorKind::Schema,
            // A hot standby cancels reads that conflict with replay with one of these two.
            Some(c)
                if *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED =>
            {
                ErrorKind::Conflict
            }
            Some(c)
                if *c == tokio_postgres::error::SqlState::INVALID_PASSWORD
                    || *c
                        == tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                ErrorKind::Auth
            }
            Some(_) => ErrorKind::Query,
            None => ErrorKind::Connect,
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
        // Raw URL-special characters that should have been percent-encoded still do not leak.
        assert_eq!(redact("postgres://u:p/a?b@h/d"), "postgres://u:***@h/d");
        assert_eq!(
            redact("host=h password='a b\\' c' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("host=h password='unterminated"),
            "host=h password=***"
        );
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
    fn tls_parameters_are_read_from_urls_and_key_value_strings() {
        let t = parse_url_with(
            "postgresql://u:pw@db/x?sslmode=require&application_name=a",
            &|_| None,
        )
        .expect("valid");
        assert_eq!(
            t.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let t = parse_url_with("host=db user=u sslmode=disable", &|_| None).expect("valid");
        assert_eq!(
            t.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        let t = parse_url_with("postgresql://u@db/x", &|_| None).expect("valid");
        assert_eq!(
            t.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        let e = parse_url_with(
            "postgresql://u:topsecret@db/x?sslmode=verify-full&sslrootcert=%2Fno%2Fca.pem",
            &|_| None,
        )
        .expect_err("missing CA file")
        .to_string();
        assert!(e.contains("/no/ca.pem") && !e.contains("topsecret"), "{e}");
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
