//! The database password never leaves the process: not in the log (at debug level), error
//! messages, `/metrics`, the landing page, `/-/ready`, the state file, `--help` or `--version`,
//! whether the URL comes from `--db-url`, `DATABASE_URL` or `--db-url-file`, and whether the
//! database is reachable, refuses the connection or refuses the password. And a rotated password
//! reaches a running exporter through its URL file and SIGHUP, with no counter restarting.

use std::process::Command;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::exporter::{free_port, Exporter, Scrape, BIN, FAST, SEED_BIN};
use super::support::pg::tls_cluster;
use super::support::{Schema, TestDb};
use super::tls::assert_fails;
use super::truth::{insert_row, settle};

/// Distinctive, with every character that has a meaning in a URL.
const PASSWORD: &str = "Xy9:p@ss/w?rd#&=+%é LEAKCHECK";

fn encoded() -> String {
    utf8_percent_encode(PASSWORD, NON_ALPHANUMERIC).to_string()
}

/// Fails if `text` holds the password in any form, or a recognisable part of it.
fn assert_clean(what: &str, text: &str) {
    for needle in [
        PASSWORD.to_string(),
        encoded(),
        "LEAKCHECK".into(),
        "Xy9".into(),
    ] {
        assert!(
            !text.contains(&needle),
            "{what} contains the password ({needle:?}):\n{text}"
        );
    }
}

/// A database on the TLS cluster, and a role `role` that logs in with `password`.
fn db_with_role(role: &str, password: &str) -> TestDb {
    let (cluster, _) = tls_cluster();
    let db = cluster.fresh_db(Schema::New);
    db.psql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT pg_read_all_data TO {role}"
    ));
    db
}

fn url(role: &str, port: u16, db: &str) -> String {
    format!(
        "postgresql://{role}:{}@127.0.0.1:{port}/{db}?sslmode=require",
        encoded()
    )
}

enum Source {
    Flag,
    Env,
    File,
}

/// Runs the exporter with `url` from each source; `up` says whether it should get ready,
/// otherwise it must fail with errors of `kind`. Everything it says must be clean.
async fn check_every_source(role: &str, url: &str, up: bool, kind: &str) {
    for source in [Source::Flag, Source::Env, Source::File] {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("db-url");
        std::fs::write(&file, format!("{url}\n")).expect("write URL file");
        let state = dir.path().join("state.json");
        let file_arg = file.display().to_string();
        let state_arg = state.display().to_string();
        let mut args = vec!["--log.level", "debug", "--state.file", &state_arg];
        args.extend_from_slice(FAST);
        let mut env = Vec::new();
        match source {
            Source::Flag => args.extend(["--db-url", url]),
            Source::Env => env.push(("DATABASE_URL", url)),
            Source::File => args.extend(["--db-url-file", &file_arg]),
        }
        let e = Exporter::spawn(&args, &env);
        if up {
            e.wait_ready(Duration::from_secs(60)).await;
        } else {
            assert_fails(&e, kind, "").await;
        }
        for path in ["/", "/metrics", "/-/ready", "/-/healthy"] {
            let (status, body) = e.get(path).await;
            assert_ne!(status, 0, "GET {path} failed");
            assert_clean(&format!("GET {path}"), &body);
        }
        // Opened before the stop, which deletes the exporter's directory: the shutdown lines
        // are read too.
        let mut log = std::fs::File::open(&e.log).expect("log");
        assert_eq!(e.stop(), 0);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut log, &mut text).expect("read log");
        assert!(text.contains("Shutting down"), "incomplete log:\n{text}");
        assert_clean("the log", &text);
        // The URL is logged, redacted: the check above looked at it.
        assert!(text.contains(&format!("{role}:***@")), "{text}");
        if let Ok(saved) = std::fs::read_to_string(&state) {
            assert_clean("the state file", &saved);
        }
    }
}

#[tokio::test]
async fn password_never_shown_with_a_reachable_database() {
    let role = "leak_ok";
    let db = db_with_role(role, PASSWORD);
    let u = url(role, db.port, &db.name);
    check_every_source(role, &u, true, "").await;
}

#[tokio::test]
async fn password_never_shown_when_the_connection_is_refused() {
    let role = "leak_refused";
    let u = url(role, free_port(), "litellm");
    check_every_source(role, &u, false, "connect").await;
}

#[tokio::test]
async fn password_never_shown_when_the_password_is_wrong() {
    let role = "leak_wrong";
    let db = db_with_role(role, "not-the-one");
    let u = url(role, db.port, &db.name);
    check_every_source(role, &u, false, "auth").await;
}

#[test]
#[should_panic(expected = "contains the password")]
fn the_leak_check_sees_the_encoded_password() {
    assert_clean("a URL", &url("r", 1, "d"));
}

#[test]
fn password_never_shown_by_help_version_or_start_errors() {
    let u = url("leak_cli", 5432, "litellm");
    let run = |bin: &str, args: &[&str]| {
        let out = Command::new(bin)
            .env("DATABASE_URL", &u)
            .args(args)
            .output()
            .expect("run the binary");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let bad_port = u.replace("5432", "notaport");
    let bad_mode = format!("{u}&sslmode=sometimes");
    for (bin, args) in [
        (BIN, &["--help"][..]),
        (BIN, &["-h"]),
        (BIN, &["--version"]),
        // Start-up errors: a bad flag next to the URL, and a URL that cannot be parsed.
        (BIN, &["--poll-interval", "soon"]),
        (BIN, &["--db-url", &bad_port]),
        (BIN, &["--db-url", &bad_mode]),
        // The traffic generator reads the same DATABASE_URL.
        (SEED_BIN, &["--help"]),
        (SEED_BIN, &["--db-url", &bad_port]),
        (SEED_BIN, &["--db-url", &bad_mode]),
    ] {
        let text = run(bin, args);
        assert!(!text.is_empty(), "{bin} {args:?} printed nothing");
        assert_clean(&format!("{bin} {args:?}"), &text);
    }
}

/// Rotating the password: the old one stops working, the exporter reports it, a new URL file
/// and SIGHUP bring it back, and every row is counted exactly once throughout.
#[tokio::test]
async fn sighup_rereads_the_url_file_after_a_password_rotation() {
    let db = db_with_role("rotated", "first-password");
    let c = db.tls_client(&tls_cluster().1.ca).await;
    for i in 0..20 {
        insert_row(
            &c,
            &format!("before-{i}"),
            5.0 + i as f64,
            "team-a",
            0.1,
            5,
            false,
        )
        .await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("db-url");
    let with_password = |pw: &str| {
        format!(
            "postgresql://rotated:{pw}@127.0.0.1:{}/{}?sslmode=require",
            db.port, db.name
        )
    };
    std::fs::write(&file, with_password("first-password")).expect("write URL file");
    let file_arg = file.display().to_string();
    let mut args = vec!["--db-url-file", &file_arg];
    args.extend_from_slice(FAST);
    let e = Exporter::spawn(&args, &[]);
    e.wait_ready(Duration::from_secs(60)).await;
    settle(&e, &c, false).await;

    // A SIGHUP with the file unchanged changes nothing.
    e.signal("HUP");
    wait_for_log(&e, "the database URL is unchanged").await;

    // Rotate: new password, and the exporter's open sessions are ended.
    db.psql(
        "ALTER ROLE rotated PASSWORD 'second-password'; \
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'rotated'",
    );
    for i in 0..10 {
        insert_row(
            &c,
            &format!("during-{i}"),
            2.0 + i as f64,
            "team-b",
            0.2,
            6,
            i == 3,
        )
        .await;
    }
    assert_fails(&e, "auth", "password authentication failed").await;

    // An unusable file keeps the current URL and says so.
    std::fs::write(&file, "postgresql://rotated:x@127.0.0.1:notaport/db").expect("write");
    e.signal("HUP");
    wait_for_log(&e, "cannot use the database URL file").await;
    let s = e.scrape().await;
    assert!(errors(&s, "db_url_file") >= 1.0);
    assert_eq!(s.value("litellm_exporter_database_up"), Some(0.0));

    std::fs::write(&file, with_password("second-password")).expect("write URL file");
    e.signal("HUP");
    e.wait_ready(Duration::from_secs(60)).await;
    let s = settle(&e, &c, false).await;
    assert_eq!(s.total("litellm_proxy_total_requests_metric_total"), 30.0);
    let log = e.log_text();
    assert!(log.contains("new database URL"), "{log}");
    for pw in ["first-password", "second-password"] {
        assert!(!log.contains(pw), "the log shows a password:\n{log}");
    }
}

fn errors(s: &Scrape, kind: &str) -> f64 {
    s.named("litellm_exporter_errors_total")
        .filter(|x| x.labels.get("kind").map(String::as_str) == Some(kind))
        .map(|x| x.value)
        .sum()
}

async fn wait_for_log(e: &Exporter, text: &str) {
    let start = Instant::now();
    while !e.log_text().contains(text) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the log never said {text:?}:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
