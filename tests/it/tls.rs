//! TLS to the database against a server that accepts TLS connections only (`tls_cluster`):
//! each sslmode connects or fails as libpq would, a failure names the check that failed (log
//! line, `litellm_exporter_errors_total{kind}`) while `/metrics` keeps answering, and a URL in
//! Prisma's spelling (LiteLLM's `DATABASE_URL`) is read as Prisma reads it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::exporter::{Exporter, Scrape, FAST};
use super::support::pg::{tls_cluster, CERT_ROLE, TLS_HOST};
use super::support::{fresh_db, Schema, TestDb};
use super::truth::{insert_row, settle};

/// A URL naming `host` (checked against the certificate) and reaching the server at 127.0.0.1.
fn url(db: &TestDb, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/{}?hostaddr=127.0.0.1&{params}",
        db.port, db.name
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A database on the TLS cluster with a few rows, and a TLS client to it.
async fn tls_db() -> (TestDb, tokio_postgres::Client) {
    let (cluster, files) = tls_cluster();
    let db = cluster.fresh_db(Schema::New);
    let c = db.tls_client(&files.ca).await;
    for i in 0..25 {
        insert_row(
            &c,
            &format!("tls-{i}"),
            5.0 + i as f64,
            if i % 2 == 0 { "team-a" } else { "team-b" },
            0.01 * i as f64,
            7,
            i % 5 == 0,
        )
        .await;
    }
    (db, c)
}

fn errors(s: &Scrape, kind: &str) -> f64 {
    s.named("litellm_exporter_errors_total")
        .filter(|x| x.labels.get("kind").map(String::as_str) == Some(kind))
        .map(|x| x.value)
        .sum()
}

/// Waits until a refresh failed with `kind`; then the exporter must still answer, say the
/// database is down, not be ready, and have logged `message`.
pub async fn assert_fails(e: &Exporter, kind: &str, message: &str) {
    let start = Instant::now();
    let s = loop {
        // Until the listener is up, the request itself fails.
        let (status, body) = e.get("/metrics").await;
        if status == 200 {
            let s = Scrape::parse(&body);
            if errors(&s, kind) >= 1.0 {
                break s;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no litellm_exporter_errors_total{{kind={kind:?}}} after 30 s; log:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s.value("litellm_exporter_database_up"), Some(0.0));
    assert_eq!(e.get("/-/ready").await.0, 503);
    assert_eq!(e.get("/-/healthy").await.0, 200);
    let log = e.log_text();
    assert!(
        log.contains(message),
        "the log does not say {message:?}:\n{log}"
    );
}

/// The exporter's sessions as the server sees them: all encrypted.
fn exporter_sessions_use_tls(db: &TestDb) {
    let got = db.psql(
        "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'litellm-exporter'",
    );
    let (all, tls) = got.split_once(' ').expect("two numbers");
    assert!(all != "0", "no exporter session seen");
    assert_eq!(all, tls, "some exporter sessions are not encrypted");
}

#[tokio::test]
async fn require_connects_and_counts_like_sql() {
    let (db, c) = tls_db().await;
    let e = Exporter::start(&db.tls_url(), FAST);
    e.wait_ready(Duration::from_secs(60)).await;
    let s = settle(&e, &c, false).await;
    assert_eq!(s.total("litellm_proxy_total_requests_metric_total"), 25.0);
    exporter_sessions_use_tls(&db);
    assert!(e
        .log_text()
        .contains("sslmode=require (certificate not checked)"));
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects() {
    let (db, c) = tls_db().await;
    let ca = path(&tls_cluster().1.ca);
    let e = Exporter::start(
        &url(
            &db,
            TLS_HOST,
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        FAST,
    );
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;
    exporter_sessions_use_tls(&db);
}

#[tokio::test]
async fn verify_full_with_another_ca_fails_clearly() {
    let (db, _c) = tls_db().await;
    let other = path(&tls_cluster().1.other_ca);
    let e = Exporter::start(
        &url(
            &db,
            TLS_HOST,
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ),
        FAST,
    );
    assert_fails(
        &e,
        "tls_unknown_ca",
        "not signed by a CA that sslrootcert trusts",
    )
    .await;
    // A CA file also makes require check the chain, as in libpq.
    let e = Exporter::start(
        &url(
            &db,
            TLS_HOST,
            &format!("sslmode=require&sslrootcert={other}"),
        ),
        FAST,
    );
    assert_fails(&e, "tls_unknown_ca", "unknown CA").await;
}

#[tokio::test]
async fn sslrootcert_system_trusts_the_system_store() {
    let (db, c) = tls_db().await;
    let files = &tls_cluster().1;
    // SSL_CERT_FILE stands in for the operating system's store, as it does for OpenSSL.
    let system_url = url(&db, TLS_HOST, "sslrootcert=system");
    let ca = path(&files.ca);
    let e = Exporter::start_with_env(&system_url, FAST, &[("SSL_CERT_FILE", ca.as_str())]);
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;
    exporter_sessions_use_tls(&db);
    assert!(
        e.log_text()
            .contains("sslmode=verify-full (CA and host name checked) ca=system"),
        "{}",
        e.log_text()
    );
    drop(e);
    // A store without the server's CA: refused, and said so.
    let other = path(&files.other_ca);
    let e = Exporter::start_with_env(&system_url, FAST, &[("SSL_CERT_FILE", other.as_str())]);
    assert_fails(
        &e,
        "tls_unknown_ca",
        "not signed by a CA that sslrootcert trusts",
    )
    .await;
}

#[tokio::test]
async fn verify_full_with_a_host_name_not_in_the_certificate_fails_clearly() {
    let (db, c) = tls_db().await;
    let ca = path(&tls_cluster().1.ca);
    let params = |mode: &str| format!("sslmode={mode}&sslrootcert={ca}");
    let e = Exporter::start(&url(&db, "other.test", &params("verify-full")), FAST);
    assert_fails(&e, "tls_hostname", "certificate is not valid for the URL").await;
    // verify-ca checks the chain only: the same URL connects.
    let e = Exporter::start(&url(&db, "other.test", &params("verify-ca")), FAST);
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;
}

#[tokio::test]
async fn disable_against_a_tls_only_server_fails_clearly() {
    let (db, _c) = tls_db().await;
    let e = Exporter::start(&format!("{}?sslmode=disable", db.url), FAST);
    assert_fails(&e, "auth", "the server accepts only TLS connections").await;
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_clearly() {
    // The shared cluster has ssl = off.
    let db = fresh_db(Schema::New);
    let e = Exporter::start(&format!("{}?sslmode=require", db.url), FAST);
    assert_fails(&e, "tls_unavailable", "the server does not offer TLS").await;
    // prefer (the default) falls back to a plain connection.
    let e = Exporter::start(&format!("{}?sslmode=prefer", db.url), FAST);
    e.wait_ready(Duration::from_secs(60)).await;
}

#[tokio::test]
async fn prisma_spelling_is_read_as_prisma_reads_it() {
    let (db, c) = tls_db().await;
    let files = &tls_cluster().1;
    let (ca, other) = (path(&files.ca), path(&files.other_ca));
    // sslcert is the CA file; sslaccept=strict checks it and the host name.
    let e = Exporter::start(
        &url(
            &db,
            TLS_HOST,
            &format!(
                "schema=public&sslmode=require&sslcert={ca}&sslaccept=strict&connection_limit=3"
            ),
        ),
        FAST,
    );
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;
    assert!(e.log_text().contains("Prisma spelling"));
    let e = Exporter::start(
        &url(
            &db,
            TLS_HOST,
            &format!("sslmode=require&sslcert={other}&sslaccept=strict"),
        ),
        FAST,
    );
    assert_fails(&e, "tls_unknown_ca", "unknown CA").await;
    // Prisma's default, accept_invalid_certs, checks nothing (as LiteLLM does with this URL).
    let e = Exporter::start(
        &url(
            &db,
            "other.test",
            &format!("sslmode=require&sslcert={other}"),
        ),
        FAST,
    );
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;
}

#[tokio::test]
async fn client_certificate_from_sslcert_and_sslkey() {
    let (db, c) = tls_db().await;
    let files = &tls_cluster().1;
    let base = format!(
        "postgres://{CERT_ROLE}@{TLS_HOST}:{}/{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        db.port,
        db.name,
        path(&files.ca)
    );
    let e = Exporter::start(
        &format!(
            "{base}&sslcert={}&sslkey={}",
            path(&files.client_cert),
            path(&files.client_key)
        ),
        FAST,
    );
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;
    // The same role without its certificate is refused by the server (pg_hba `cert`).
    let e = Exporter::start(&base, FAST);
    assert_fails(&e, "auth", "certificate").await;
}

#[test]
fn mixed_spellings_are_refused_at_start() {
    let out = std::process::Command::new(super::exporter::BIN)
        .args([
            "--db-url",
            "postgres://u:pw@db/x?sslcert=/ca.pem&sslrootcert=/ca.pem",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixes Prisma's TLS parameters"), "{err}");
}
