//! The command-line contract: version output, configuration errors (one line, password
//! redacted, exit code 2), an unreachable database (keeps serving, says so), missing tables,
//! the endpoints, and a clean SIGTERM.

use std::process::Command;
use std::time::Duration;

use super::exporter::{free_port, Exporter, BIN, FAST};
use super::support::{cluster, fresh_db, Schema};

#[test]
fn version_names_the_build() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains(env!("CARGO_PKG_VERSION")) && s.contains("revision"),
        "{s}"
    );
}

#[test]
fn help_never_shows_the_database_url() {
    let out = Command::new(BIN)
        .arg("--help")
        .env("DATABASE_URL", "postgres://u:hunter2@db/x")
        .output()
        .expect("run");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("--db-url") && s.contains("--web.listen-address"));
    assert!(!s.contains("hunter2"), "{s}");
}

/// The exporter's binary does not write: the traffic generator is `litellm-seed`, a binary of its
/// own. `seed` is no subcommand (clap's usage error, exit code 2), and the generator's statements
/// (its INSERTs and its COPY into the spend log) are not linked into the binary at all.
#[test]
fn the_exporter_binary_has_no_traffic_generator() {
    let out = Command::new(BIN)
        .args(["seed", "--rows", "1"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unrecognized subcommand 'seed'"), "{err}");
    let help = Command::new(BIN).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("check-config") && !help.contains("seed"),
        "{help}"
    );
    let bytes = std::fs::read(BIN).expect("read the binary");
    let generator = std::fs::read(super::exporter::SEED_BIN).expect("read litellm-seed");
    for statement in ["INSERT INTO", "ON CONFLICT", "FROM STDIN"] {
        let contains = |b: &[u8]| {
            b.windows(statement.len())
                .any(|w| w == statement.as_bytes())
        };
        // The generator does hold it: the search would find it if it were linked in.
        assert!(contains(&generator), "litellm-seed lacks {statement:?}");
        assert!(!contains(&bytes), "litellm-exporter contains {statement:?}");
    }
}

fn config_error(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should be a configuration error"
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    err
}

#[test]
fn configuration_errors_are_one_line_with_exit_code_2() {
    let e = config_error(&["--db-url", "postgresql://llm:hunter2@db:notaport/litellm"]);
    assert!(
        e.contains("postgresql://llm:***@db:notaport/litellm") && !e.contains("hunter2"),
        "{e}"
    );
    let e = config_error(&[]);
    assert!(e.contains("no database URL"), "{e}");
    let e = config_error(&["--db-url", "postgres://u@h/d", "--poll-interval", "soon"]);
    assert!(e.contains("--poll-interval"), "{e}");
    let e = config_error(&["--db-url", "postgres://u@h/d", "--log.format", "xml"]);
    assert!(e.contains("logfmt"), "{e}");
    let e = config_error(&["--db-url", "postgres://u@h/d", "--db.pool-size", "9"]);
    assert!(e.contains("pool-size"), "{e}");
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "exporter:\n  pol_interval: 1s\n").expect("write");
    let e = config_error(&[
        "--db-url",
        "postgres://u@h/d",
        "--config.file",
        f.to_str().expect("utf8"),
    ]);
    assert!(e.contains("pol_interval"), "{e}");
}

#[tokio::test]
async fn unreachable_database_keeps_serving_and_says_so() {
    let port = free_port(); // nothing listens there
    let url = format!("postgres://u:hunter2@127.0.0.1:{port}/litellm");
    let e = Exporter::start(&url, FAST);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = e.scrape().await;
    assert_eq!(s.value("litellm_exporter_database_up"), Some(0.0));
    assert!(s.value("litellm_exporter_errors_total").is_some());
    let (ready, body) = e.get("/-/ready").await;
    assert_eq!(ready, 503, "{body}");
    assert_eq!(e.get("/-/healthy").await.0, 200);
    let (status, landing) = e.get("/").await;
    assert!(status == 200 && landing.contains("/metrics"));
    let log = e.log_text();
    assert!(!log.contains("hunter2") && log.contains("***"), "{log}");
    assert_eq!(e.stop(), 0);
}

#[tokio::test]
async fn a_database_without_litellm_tables_is_reported() {
    let db = cluster().empty_db();
    let e = Exporter::start(&db.url, FAST);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = e.scrape().await;
    // The database answers: a missing schema is its own state, not an outage.
    assert_eq!(s.value("litellm_exporter_database_up"), Some(1.0));
    assert_eq!(s.value("litellm_exporter_schema_up"), Some(0.0));
    let (status, body) = e.get("/-/ready").await;
    assert!(
        status == 503 && body.contains("has no LiteLLM spend-log table"),
        "{body}"
    );
    let schema_errors = s
        .named("litellm_exporter_errors_total")
        .find(|x| x.labels.get("kind").map(String::as_str) == Some("schema"))
        .map(|x| x.value)
        .unwrap_or(0.0);
    assert!(schema_errors >= 1.0);
    assert!(
        e.log_text().contains("LiteLLM_SpendLogs is missing"),
        "{}",
        e.log_text()
    );
}

#[tokio::test]
async fn endpoints_and_gzip() {
    let db = fresh_db(Schema::New);
    let e = Exporter::start(
        &db.url,
        &[
            "--web.telemetry-path",
            "/custom/path",
            "--poll-interval",
            "200ms",
        ],
    );
    e.wait_ready(Duration::from_secs(30)).await;
    let (status, body) = e.get("/custom/path").await;
    assert_eq!(status, 200);
    assert!(body.contains("litellm_exporter_build_info{"));
    assert!(body.contains("litellm_exporter_ready 1"));
    assert_eq!(e.get("/metrics").await.0, 404);
    let client = reqwest::Client::builder()
        .gzip(true)
        .build()
        .expect("client");
    let r = client
        .get(format!("http://127.0.0.1:{}/custom/path", e.port))
        .send()
        .await
        .expect("gzip scrape");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("litellm_exporter_database_up 1"));

    // The raw gzip body (compressed prefix + per-request suffix) is one valid gzip member whose
    // text equals the identity body, apart from self-metrics that move between requests.
    let raw = reqwest::Client::builder()
        .gzip(false)
        .build()
        .expect("client");
    let url = format!("http://127.0.0.1:{}/custom/path", e.port);
    let r = raw
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("raw gzip scrape");
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let declared = r.content_length();
    let bytes = r.bytes().await.expect("gzip body");
    assert_eq!(
        declared,
        Some(bytes.len() as u64),
        "gzip body length declared"
    );
    let mut decoder = flate2::read::GzDecoder::new(&bytes[..]);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut decoder, &mut text).expect("valid gzip");
    assert!(decoder.into_inner().is_empty(), "one gzip member only");
    // The identity body declares its length too (no chunked encoding).
    let r = raw.get(&url).send().await.expect("plain scrape");
    assert!(r.headers().get("transfer-encoding").is_none());
    let declared = r.content_length();
    let plain = r.text().await.expect("plain body");
    assert_eq!(declared, Some(plain.len() as u64), "body length declared");
    let stable = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.contains("litellm_exporter_"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(stable(&text), stable(&plain));
    assert!(text.ends_with('\n') && text.contains("litellm_exporter_build_info{"));
}

/// HEAD answers wherever GET does (load balancers and uptime checkers probe with HEAD), with
/// GET's status and headers and no body; other methods are told which ones work.
#[tokio::test]
async fn head_answers_wherever_get_does() {
    let db = fresh_db(Schema::New);
    let e = Exporter::start(&db.url, FAST);
    e.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/-/ready", "/-/healthy", "/", "/nowhere"] {
        let url = format!("http://127.0.0.1:{}{path}", e.port);
        let get = client.get(&url).send().await.expect("GET");
        let get_status = get.status();
        let get_type = get.headers().get("content-type").cloned();
        let head = client.head(&url).send().await.expect("HEAD");
        assert_eq!(head.status(), get_status, "{path}");
        assert_eq!(
            head.headers().get("content-type").cloned(),
            get_type,
            "{path}"
        );
        assert!(head.bytes().await.expect("HEAD body").is_empty(), "{path}");
        if path == "/metrics" {
            // On the wire (the HTTP client hides a HEAD response's length): the length GET's
            // body would have, and nothing after the head.
            use std::io::{Read, Write};
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", e.port)).expect("connect");
            tcp.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .expect("send");
            let mut raw = String::new();
            tcp.read_to_string(&mut raw).expect("read");
            let (head_text, body) = raw.split_once("\r\n\r\n").expect("a response head");
            let declared: u64 = head_text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("HEAD declares no length: {head_text}"));
            assert!(declared > 1000, "{head_text}");
            assert!(body.is_empty(), "HEAD sent a body");
        }
    }
    let post = client
        .post(format!("http://127.0.0.1:{}/metrics", e.port))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(
        post.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD")
    );
}

/// The state file's directory is created at start; a path that cannot be written is refused
/// at start (exit 2, saying why), not found at the first save after a long catch-up.
#[tokio::test]
async fn the_state_file_directory_is_created_or_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = fresh_db(Schema::New);
    let nested = dir.path().join("not/yet/there/state.json");
    let e = Exporter::start(
        &db.url,
        &[FAST, &["--state.file", nested.to_str().expect("utf8")][..]].concat(),
    );
    e.wait_ready(Duration::from_secs(30)).await;
    assert!(nested.parent().expect("parent").is_dir());
    assert_eq!(e.stop(), 0);
    assert!(nested.is_file(), "saved at shutdown");

    // A path under a regular file: no directory can be made there (root included).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let under_file = file.join("state.json");
    let err = config_error(&[
        "--db-url",
        "postgres://u@127.0.0.1:1/d",
        "--state.file",
        under_file.to_str().expect("utf8"),
    ]);
    assert!(
        err.contains("cannot create the state file's directory")
            && err.contains(file.to_str().expect("utf8")),
        "{err}"
    );
    // A directory given as the file.
    let err = config_error(&[
        "--db-url",
        "postgres://u@127.0.0.1:1/d",
        "--state.file",
        dir.path().to_str().expect("utf8"),
    ]);
    assert!(err.contains("is a directory"), "{err}");
}

/// A listen address in use is named, with the flag that changes it.
#[tokio::test]
async fn a_taken_listen_address_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("s.json");
    let out = Command::new(BIN)
        .args([
            "--db-url",
            "postgres://u@127.0.0.1:1/d",
            "--state.file",
            state.to_str().expect("utf8"),
            "--web.listen-address",
            &addr,
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--web.listen-address"),
        "{err}"
    );
}

#[test]
fn check_config_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("proxy_config.yaml");
    std::fs::write(
        &file,
        "model_list: []\nlitellm_settings:\n  callbacks: [prometheus]\n",
    )
    .expect("write");
    // As `check-config FILE | head -0`: the reader is gone before the first line is written.
    let mut child = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
