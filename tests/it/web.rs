//! The HTTP side's security and shutdown, against the real binary: credentials on the telemetry
//! path (basic auth with bcrypt hashes, a bearer token), HTTPS and client certificates with a
//! test CA made here, TLS version limits, SIGHUP reloads (good and bad files), a clear exit
//! code for a bad web configuration, and the SIGTERM drain of an in-flight scrape.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::exporter::{Exporter, BIN, FAST, SEED_BIN};
use super::support::{fresh_db, Schema};
use super::truth::insert_row;

const READY: Duration = Duration::from_secs(60);

/// A database with one row, so that the telemetry path has LiteLLM series to leak.
async fn db_with_a_row() -> super::support::TestDb {
    let db = fresh_db(Schema::New);
    let c = db.client().await;
    insert_row(&c, "web-1", 10.0, "team-web", 0.25, 3, false).await;
    db
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// bcrypt at the lowest cost: the exporter must accept any valid cost, and tests stay fast.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// GET with an optional Authorization header: (status, WWW-Authenticate values, body).
async fn get_auth(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
) -> (u16, Vec<String>, String) {
    let mut req = client.get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let challenges = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    (status, challenges, r.text().await.unwrap_or_default())
}

async fn wait_until<F, Fut>(what: &str, e: &Exporter, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < timeout,
            "{what}: not after {timeout:?}; log:\n{}",
            e.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn credentials_guard_the_telemetry_path_only() {
    let db = db_with_a_row().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "basic_auth_users:\n  alice: '{}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            hash("right")
        ),
    );
    let token = write(dir.path(), "token", "s3cret-token\n");
    let web_arg = web.to_str().expect("utf-8 path");
    // The token file through its environment variable, the config through its flag.
    let e = Exporter::start_with_env(
        &db.url,
        &[FAST, &["--web.config.file", web_arg]].concat(),
        &[(
            "LITELLM_EXPORTER_WEB_BEARER_TOKEN_FILE",
            token.to_str().expect("utf-8 path"),
        )],
    );
    e.wait_ready(READY).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", e.port);
    let metrics = url("/metrics");

    let (status, challenges, body) = get_auth(&client, &metrics, None).await;
    assert_eq!(status, 401);
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic realm="))
            && challenges.iter().any(|c| c.starts_with("Bearer realm=")),
        "{challenges:?}"
    );
    assert!(
        !body.contains("litellm") && !body.contains("team-web") && body.len() < 100,
        "a refused scrape leaks nothing: {body:?}"
    );

    // Open paths.
    for p in ["/", "/-/healthy", "/-/ready"] {
        let (status, _, _) = get_auth(&client, &url(p), None).await;
        assert_eq!(status, 200, "{p} stays open");
    }

    let (status, _, body) = get_auth(&client, &metrics, Some(&basic("alice", "right"))).await;
    assert_eq!(status, 200);
    assert!(body.contains("litellm_proxy_total_requests_metric_total"));
    // Again: now served from the cache of verified passwords; same answer.
    let (status, _, _) = get_auth(&client, &metrics, Some(&basic("alice", "right"))).await;
    assert_eq!(status, 200);
    for (what, auth) in [
        ("wrong password", basic("alice", "wrong")),
        ("unknown user", basic("mallory", "right")),
        ("empty password", basic("alice", "")),
        ("wrong token", "Bearer s3cret-tokenX".into()),
        ("token as password", basic("alice", "s3cret-token")),
        ("unknown scheme", "Digest username=alice".into()),
    ] {
        let (status, _, body) = get_auth(&client, &metrics, Some(&auth)).await;
        assert_eq!(status, 401, "{what}");
        assert!(!body.contains("litellm"), "{what}: {body}");
    }
    let (status, _, body) = get_auth(&client, &metrics, Some("Bearer s3cret-token")).await;
    assert_eq!(status, 200, "the bearer token admits too");
    assert!(body.contains("litellm_proxy_total_requests_metric_total"));

    let r = client.get(url("/")).send().await.expect("landing");
    assert_eq!(
        r.headers().get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"deny"[..]),
        "http_server_config.headers are added"
    );
}

#[test]
fn an_invalid_web_config_exits_2_naming_file_and_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "unknown.yml",
            "tls_server_config:\n  cert_flie: a.pem\n",
            "cert_flie",
        ),
        (
            "plain.yml",
            "basic_auth_users:\n  alice: hunter2\n",
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "cert.yml",
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
            "cert_file",
        ),
        (
            "version.yml",
            "tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  min_version: TLS10\n",
            "a.pem",
        ),
        (
            "inline.yml",
            "tls_server_config:\n  cert: abc\n",
            "tls_server_config.cert is not supported",
        ),
    ];
    for (name, text, want) in cases {
        let f = write(dir.path(), name, text);
        let out = std::process::Command::new(BIN)
            .args([
                "--db-url",
                "postgres://u@127.0.0.1:1/d",
                "--web.config.file",
            ])
            .arg(&f)
            .output()
            .expect("run litellm-exporter");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("web config file {}", f.display())) && err.contains(want),
            "{name}: {err}"
        );
    }
    let empty = write(dir.path(), "token", "\n");
    let out = std::process::Command::new(BIN)
        .args([
            "--db-url",
            "postgres://u@127.0.0.1:1/d",
            "--web.bearer-token-file",
        ])
        .arg(&empty)
        .output()
        .expect("run litellm-exporter");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "bearer token file {}: the file is empty",
            empty.display()
        )),
        "{err}"
    );
}

#[test]
fn check_config_checks_the_web_files_given_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "exporter.yaml",
        "exporter:\n  poll_interval: 5s\n",
    );
    let check = |flags: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(BIN)
            .args(flags)
            .arg("check-config")
            .arg(&cfg)
            .output()
            .expect("run litellm-exporter check-config");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let bad = write(
        dir.path(),
        "bad.yml",
        "basic_auth_users:\n  alice: hunter2\n",
    );
    let (code, text) = check(&["--web.config.file".as_ref(), bad.as_os_str()]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("web config file {}", bad.display()))
            && text.contains("not a bcrypt hash"),
        "{text}"
    );
    let good = write(
        dir.path(),
        "good.yml",
        &format!(
            "basic_auth_users:\n  bob: '{}'\n  alice: '{}'\n",
            hash("b"),
            hash("a")
        ),
    );
    let token = write(dir.path(), "token", "s3cret-token\n");
    let (code, text) = check(&[
        "--web.config.file".as_ref(),
        good.as_os_str(),
        "--web.bearer-token-file".as_ref(),
        token.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Serving plain HTTP, basic auth for alice, bob, a bearer token."),
        "{text}"
    );
    assert!(!text.contains("s3cret") && !text.contains("$2"), "{text}");
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    ca: CertificateDer<'static>,
    server_pem: String,
    server_key_pem: String,
    client: CertificateDer<'static>,
    client_key: Vec<u8>,
    ca_pem: String,
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA");

    let server_key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(Vec::<String>::new()).expect("params");
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server cert");

    let client_key = KeyPair::generate().expect("key");
    let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
    client
        .distinguished_name
        .push(DnType::CommonName, "prometheus");
    client.subject_alt_names.push(SanType::DnsName(
        "prometheus.example".try_into().expect("DNS name"),
    ));
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client
        .signed_by(&client_key, &ca_cert, &ca_key)
        .expect("client cert");
    Pki {
        ca: ca_cert.der().clone(),
        ca_pem: ca_cert.pem(),
        server_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client: client_cert.der().clone(),
        client_key: client_key.serialize_der(),
    }
}

/// A client trusting `ca` only, speaking the given TLS versions, with or without a certificate.
fn tls_client(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert: Option<&Pki>,
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots);
    let cfg = match cert {
        Some(p) => b
            .with_client_auth_cert(
                vec![p.client.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.client_key.clone())),
            )
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

async fn healthy(client: &reqwest::Client, port: u16) -> Result<u16, String> {
    client
        .get(format!("https://127.0.0.1:{port}/-/healthy"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn https_with_client_certificates_and_certificate_reload() {
    let db = db_with_a_row().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pki("first");
    write(dir.path(), "server.pem", &p.server_pem);
    write(dir.path(), "server.key", &p.server_key_pem);
    write(dir.path(), "ca.pem", &p.ca_pem);
    // Relative paths: resolved against the web config file's directory.
    let web = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let e = Exporter::start(
        &db.url,
        &[FAST, &["--web.config.file", web.to_str().expect("utf-8")]].concat(),
    );
    let with_cert = tls_client(&p.ca, BOTH, Some(&p));
    wait_until(
        "HTTPS with a client certificate answers",
        &e,
        READY,
        || async { healthy(&with_cert, e.port).await == Ok(200) },
    )
    .await;
    let r = with_cert
        .get(format!("https://127.0.0.1:{}/metrics", e.port))
        .send()
        .await
        .expect("scrape over mTLS");
    assert_eq!(r.status().as_u16(), 200);

    let without = tls_client(&p.ca, BOTH, None);
    let refused = healthy(&without, e.port).await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused: {refused:?}"
    );
    let other = pki("stranger");
    let stranger = tls_client(&p.ca, BOTH, Some(&other));
    let refused = healthy(&stranger, e.port).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA is refused: {refused:?}"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/-/healthy", e.port))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16()).unwrap_or(0) != 200,
        "plain HTTP is not served when TLS is configured"
    );

    // New certificates from another CA, then SIGHUP: new connections get them.
    let q = pki("second");
    write(dir.path(), "server.pem", &q.server_pem);
    write(dir.path(), "server.key", &q.server_key_pem);
    write(dir.path(), "ca.pem", &q.ca_pem);
    e.signal("HUP");
    let new_client = tls_client(&q.ca, BOTH, Some(&q));
    wait_until("the reloaded certificate is served", &e, READY, || async {
        healthy(&new_client, e.port).await == Ok(200)
    })
    .await;
    let old_client = tls_client(&p.ca, BOTH, Some(&p));
    assert!(
        healthy(&old_client, e.port).await.is_err(),
        "the old certificate and CA are gone after the reload"
    );
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_client() {
    let db = db_with_a_row().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pki("versions");
    let cert = write(dir.path(), "server.pem", &p.server_pem);
    let key = write(dir.path(), "server.key", &p.server_key_pem);
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  min_version: TLS13\n",
            cert.display(),
            key.display()
        ),
    );
    let e = Exporter::start(
        &db.url,
        &[FAST, &["--web.config.file", web.to_str().expect("utf-8")]].concat(),
    );
    let tls13 = tls_client(&p.ca, &[&rustls::version::TLS13], None);
    wait_until("HTTPS answers a TLS 1.3 client", &e, READY, || async {
        healthy(&tls13, e.port).await == Ok(200)
    })
    .await;
    let tls12 = tls_client(&p.ca, &[&rustls::version::TLS12], None);
    let refused = healthy(&tls12, e.port).await;
    assert!(
        refused.is_err(),
        "a TLS 1.2-only client is refused: {refused:?}"
    );
}

fn reload_ok(body: &str) -> Option<f64> {
    super::exporter::Scrape::parse(body).value("litellm_exporter_web_config_last_reload_successful")
}

#[tokio::test]
async fn sighup_reloads_passwords_and_tokens_and_keeps_the_old_config_when_a_file_is_bad() {
    let db = db_with_a_row().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let web = write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("old")),
    );
    let token = write(dir.path(), "token", "first-token");
    let e = Exporter::start(
        &db.url,
        &[
            FAST,
            &["--web.config.file", web.to_str().expect("utf-8")],
            &["--web.bearer-token-file", token.to_str().expect("utf-8")],
        ]
        .concat(),
    );
    e.wait_ready(READY).await;
    let client = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{}/metrics", e.port);
    let (status, _, body) = get_auth(&client, &metrics, Some(&basic("alice", "old"))).await;
    assert_eq!(status, 200);
    assert_eq!(reload_ok(&body), Some(1.0), "1 from the start");
    let (status, _, _) = get_auth(&client, &metrics, Some("Bearer first-token")).await;
    assert_eq!(status, 200);

    write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("new")),
    );
    write(dir.path(), "token", "second-token\n");
    e.signal("HUP");
    wait_until("the new password admits", &e, READY, || async {
        get_auth(&client, &metrics, Some(&basic("alice", "new")))
            .await
            .0
            == 200
    })
    .await;
    let (status, _, _) = get_auth(&client, &metrics, Some(&basic("alice", "old"))).await;
    assert_eq!(
        status, 401,
        "the old password (cached before) no longer admits"
    );
    let (status, _, _) = get_auth(&client, &metrics, Some("Bearer second-token")).await;
    assert_eq!(status, 200, "the new token admits");
    let (status, _, _) = get_auth(&client, &metrics, Some("Bearer first-token")).await;
    assert_eq!(status, 401, "the old token no longer admits");

    write(
        dir.path(),
        "web.yml",
        "basic_auth_users:\n  alice: [not, a, hash\n",
    );
    e.signal("HUP");
    wait_until("the failed reload is reported", &e, READY, || async {
        let (status, _, body) = get_auth(&client, &metrics, Some(&basic("alice", "new"))).await;
        status == 200 && reload_ok(&body) == Some(0.0)
    })
    .await;
    let (status, _, _) = get_auth(&client, &metrics, None).await;
    assert_eq!(status, 401, "still guarded by the previous config");
    assert!(
        e.log_text().contains("Cannot reload the web configuration"),
        "the failed reload is logged:\n{}",
        e.log_text()
    );

    // Fixed again: the metric returns to 1.
    write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("newer")),
    );
    e.signal("HUP");
    wait_until(
        "a good reload sets the metric back to 1",
        &e,
        READY,
        || async {
            let (status, _, body) =
                get_auth(&client, &metrics, Some(&basic("alice", "newer"))).await;
            status == 200 && reload_ok(&body) == Some(1.0)
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_finishes_the_scrape_in_flight_and_exits_0_within_the_drain_timeout() {
    let db = fresh_db(Schema::New);
    // Many distinct label sets: an exposition of tens of megabytes, far more than the socket
    // buffers hold, so that a client reading slowly keeps its scrape in flight.
    let out = std::process::Command::new(SEED_BIN)
        .args(["--db-url", &db.url, "--rows", "3000", "--days", "1"])
        .args(["--keys", "1500", "--users", "800", "--teams", "100"])
        .output()
        .expect("run litellm-seed");
    assert!(
        out.status.success(),
        "seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drain = Duration::from_secs(8);
    let mut e = Exporter::start(&db.url, &[FAST, &["--web.drain-timeout", "8s"]].concat());
    e.wait_ready(Duration::from_secs(120)).await;

    // A: the scrape that must finish. B: a scrape whose client never reads, which the drain
    // timeout must cut.
    let url = format!("http://127.0.0.1:{}/metrics", e.port);
    let mut a = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .expect("scrape A");
    assert_eq!(a.status().as_u16(), 200);
    // B on a raw socket with a small receive buffer, so that no client library reads ahead.
    let b_socket = tokio::net::TcpSocket::new_v4().expect("socket");
    b_socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut b = b_socket
        .connect(([127, 0, 0, 1], e.port).into())
        .await
        .expect("connect B");
    tokio::io::AsyncWriteExt::write_all(&mut b, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send B");
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut b, &mut head)
        .await
        .expect("B's response starts");
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut body = Vec::new();
    body.extend_from_slice(&a.chunk().await.expect("first chunk").expect("some body"));

    let term = Instant::now();
    e.signal("TERM");
    // Give the signal time to arrive; the scrape is still far from done.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", e.port)).await;
    assert!(
        refused.is_err(),
        "new connections are refused while draining"
    );

    while let Some(chunk) = a.chunk().await.expect("the in-flight scrape completes") {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).expect("utf-8");
    assert!(
        text.len() > 16 << 20,
        "the exposition ({} bytes) must exceed the socket buffers for this test to mean anything",
        text.len()
    );
    assert!(
        text.contains("litellm_exporter_build_info"),
        "the body ends with the self-metrics, so it is complete"
    );
    super::exporter::Scrape::parse(&text);

    let code = e.wait_exit(drain + Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "exit code after SIGTERM; log:\n{}",
        e.log_text()
    );
    assert!(
        term.elapsed() >= drain - Duration::from_millis(500),
        "B never finished reading, so the exporter waited for the drain timeout ({:?}); log:\n{}",
        term.elapsed(),
        e.log_text()
    );
    assert!(
        e.log_text()
            .contains("still open after --web.drain-timeout"),
        "the cut connection is logged:\n{}",
        e.log_text()
    );
}

#[tokio::test]
async fn sigterm_exits_within_the_drain_timeout_even_when_the_database_hangs() {
    let cluster = super::support::private_cluster();
    let db = cluster.fresh_db(Schema::New);
    let mut e = Exporter::start(&db.url, &[FAST, &["--web.drain-timeout", "3s"]].concat());
    e.wait_ready(READY).await;
    // Frozen: queries hang and no server-side timeout fires, so the refresh loop is stuck in
    // its cycle when SIGTERM arrives.
    cluster.sigstop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    e.signal("TERM");
    let code = e.wait_exit(Duration::from_secs(30));
    cluster.sigcont();
    assert_eq!(code, Some(0), "exit code; log:\n{}", e.log_text());
    assert!(
        e.log_text()
            .contains("did not stop within --web.drain-timeout"),
        "the cut refresh loop is logged:\n{}",
        e.log_text()
    );
}

#[tokio::test]
async fn client_allowed_sans_admits_only_named_client_certificates() {
    let db = db_with_a_row().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pki("sans");
    write(dir.path(), "server.pem", &p.server_pem);
    write(dir.path(), "server.key", &p.server_key_pem);
    write(dir.path(), "ca.pem", &p.ca_pem);
    let config = |san: &str| {
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [{san}]\n"
        )
    };
    let web = write(dir.path(), "web.yml", &config("prometheus.example"));
    let e = Exporter::start(
        &db.url,
        &[FAST, &["--web.config.file", web.to_str().expect("utf-8")]].concat(),
    );
    let client = tls_client(&p.ca, BOTH, Some(&p));
    wait_until(
        "a client named in client_allowed_sans is admitted",
        &e,
        READY,
        || async { healthy(&client, e.port).await == Ok(200) },
    )
    .await;
    // The same certificate, no longer named: refused on new connections after a reload.
    write(dir.path(), "web.yml", &config("other.example"));
    e.signal("HUP");
    wait_until("a client not named is refused", &e, READY, || async {
        healthy(&tls_client(&p.ca, BOTH, Some(&p)), e.port)
            .await
            .is_err()
    })
    .await;
}
