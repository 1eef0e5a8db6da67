//! Runs the real `litellm-exporter` binary against a test database and reads what it serves:
//! a small parser of the text exposition (strict: a malformed line fails the test), helpers that
//! sum series by a label, and a wait for the values to settle.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_litellm-exporter");
/// The traffic generator, a binary of its own: the exporter's binary has no writer.
pub const SEED_BIN: &str = env!("CARGO_BIN_EXE_litellm-seed");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub struct Exporter {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Flags for fast tests: short polls, the whole lateness window (1 h) read on every poll.
pub const FAST: &[&str] = &["--poll-interval", "200ms", "--ledger.recent-window", "1h"];

impl Exporter {
    pub fn start(db_url: &str, args: &[&str]) -> Exporter {
        Self::start_with_env(db_url, args, &[])
    }

    /// `start` with extra environment variables (for flags given through the environment).
    pub fn start_with_env(db_url: &str, args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut all = vec!["--db-url", db_url];
        all.extend_from_slice(args);
        Exporter::spawn(&all, env)
    }

    /// Runs the binary with exactly `args` (plus the listen address) and `env`; the database URL
    /// variables of the test process are not inherited.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        Self::launch(Command::new(BIN), args, env)
    }

    /// `spawn` through `program` and its `pre` arguments (a shell that enters a cgroup, then
    /// execs the binary): the process id is the exporter's once the wrapper has exec'd.
    pub fn spawn_wrapped(program: &str, pre: &[&str], args: &[&str]) -> Exporter {
        let mut cmd = Command::new(program);
        cmd.args(pre);
        Self::launch(cmd, args, &[])
    }

    fn launch(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("exporter.log");
        let port = free_port();
        let child = cmd
            .env_remove("DATABASE_URL")
            .env_remove("LITELLM_EXPORTER_DB_URL_FILE")
            .envs(env.iter().copied())
            .args(args)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start litellm-exporter");
        Exporter {
            child: Some(child),
            port,
            log,
            _dir: dir,
        }
    }

    /// The process's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }

    /// Whether one of the exporter's sessions in `c`'s database waits for a lock.
    pub async fn waits_for_a_lock(c: &tokio_postgres::Client) -> bool {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'litellm-exporter'
                   AND datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        waiting > 0
    }

    /// The exporter's process id (for /proc figures: memory, sockets).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{}", self.port, path);
        match reqwest::get(&url).await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    pub async fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "scrape failed; log:\n{}", self.log_text());
        Scrape::parse(&body)
    }

    /// Waits for /-/ready to answer 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.get("/-/ready").await.0 == 200 {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "exporter not ready after {timeout:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a signal (e.g. "HUP", "TERM") without waiting for anything.
    pub fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("running");
        unsafe_kill(child.id(), sig);
    }

    /// Waits up to `timeout` for the process to exit; its exit code, or None if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn stop(mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "exporter did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    // s starts right after '{'
    let mut labels = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        if b[i] == b'}' {
            return (labels, &s[i + 1..]);
        }
        let eq = s[i..].find('=').expect("label =") + i;
        let name = s[i..eq].trim_start_matches(',').to_string();
        assert_eq!(b[eq + 1], b'"', "label value must be quoted: {s}");
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            let c = s[j..].chars().next().expect("unterminated label value");
            j += c.len_utf8();
            match c {
                '\\' => {
                    let e = s[j..].chars().next().expect("escape");
                    j += e.len_utf8();
                    match e {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => panic!("bad escape \\{other} in {s}"),
                    }
                }
                '"' => break,
                '\n' => panic!("raw newline in label value"),
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        i = j;
        if b[i] == b',' {
            i += 1;
        }
    }
}

impl Scrape {
    pub fn parse(body: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in body.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => (&line[..i], &line[i..]),
                None => panic!("bad line {line:?}"),
            };
            let (labels, rest) = if let Some(r) = rest.strip_prefix('{') {
                parse_labels(r)
            } else {
                (BTreeMap::new(), rest)
            };
            let value = rest.trim();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Scrape { samples }
    }

    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Samples whose name starts with `prefix`.
    pub fn named_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name.starts_with(prefix))
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.named(name).next().map(|s| s.value)
    }

    /// Sum of `name` grouped by `label`.
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.named(name) {
            let k = s.labels.get(label).cloned().unwrap_or_default();
            *out.entry(k).or_insert(0.0) += s.value;
        }
        out
    }

    pub fn total(&self, name: &str) -> f64 {
        self.named(name).map(|s| s.value).sum()
    }

    /// Every counter-like sample (counters, histogram buckets, counts and sums) with its value.
    pub fn counters(&self) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|s| {
                s.name.starts_with("litellm_")
                    && !s.name.starts_with("litellm_exporter_")
                    && (s.name.ends_with("_total")
                        || s.name.ends_with("_bucket")
                        || s.name.ends_with("_count")
                        || s.name.ends_with("_sum"))
            })
            .map(|s| (format!("{}{:?}", s.name, s.labels), s.value))
            .collect()
    }
}

/// Asserts two maps are equal, with relative tolerance `tol` on values.
pub fn assert_close(
    what: &str,
    got: &BTreeMap<String, f64>,
    want: &BTreeMap<String, f64>,
    tol: f64,
) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let mut bad = Vec::new();
    for k in keys {
        let g = got.get(k).copied().unwrap_or(0.0);
        let w = want.get(k).copied().unwrap_or(0.0);
        if !close(g, w, tol) {
            bad.push(format!("{k}: exported {g} vs SQL {w}"));
        }
    }
    assert!(bad.is_empty(), "{what} differs:\n{}", bad.join("\n"));
}

pub fn close(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol * a.abs().max(b.abs())
}
