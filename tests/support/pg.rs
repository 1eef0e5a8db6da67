//! Throwaway PostgreSQL 15 for the integration tests, with LiteLLM's real schema.
//!
//! This file owns:
//! - the per-process cluster ([`cluster`]): `initdb` into a fresh temporary
//!   directory, a `postgres` child process listening on 127.0.0.1 only, stopped
//!   and deleted when the test process exits (however it exits);
//! - the LiteLLM schema templates: every `*/migration.sql` of the PyPI package
//!   `litellm-proxy-extras` (fetched by `scripts/fetch-schemas`) applied once per
//!   process into `litellm_tpl_new` (0.4.110) / `litellm_tpl_old` (0.1.1);
//! - [`fresh_db`]: a new, uniquely named database cloned from a template, so
//!   every test gets its own database and tests can run in parallel;
//! - outage simulation: [`Cluster::stop`] / [`Cluster::start`] (clean
//!   shutdown and restart on the same port and data) and [`Cluster::sigstop`]
//!   / [`Cluster::sigcont`] (freeze / thaw every server process, so
//!   connections hang instead of failing). The shared cluster serves every
//!   test of the process at once, so outage tests use a [`private_cluster`].
//!
//! Nothing here mocks the database and nothing skips: a missing binary or
//! schema panics with a message saying what to install or run.
//!
//! Everything is synchronous (`std::process`); the calls are short, so calling
//! them from a `#[tokio::test]` is fine.
//!
//! When the tests run as root, PostgreSQL refuses to run, so every server
//! binary (`initdb`, `postgres`) runs as user `postgres` through `runuser` and
//! the temporary directory is handed to that user. Client programs (`psql`,
//! `pg_isready`) connect over TCP as role `postgres` with trust auth and run as
//! whoever runs the tests.
//!
//! Environment:
//! - `PG_BIN`: directory of the PostgreSQL 15 binaries (default
//!   `/usr/lib/postgresql/15/bin`);
//! - `LITELLM_SCHEMA_DIR_0_4_110`, `LITELLM_SCHEMA_DIR_0_1_1`: a `migrations`
//!   directory to use instead of the one under `.cache/litellm-schemas`;
//! - `LITELLM_TEST_KEEP_PG=1`: keep the temporary directory (data, server log)
//!   after the tests for debugging; its path is printed to stderr;
//! - `LITELLM_TEST_PG_TIMINGS=1`: print how long startup, migrations and
//!   clones take (visible with `--nocapture`).

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `postgres "$@"` and stops it when our stdin reaches end-of-file.
///
/// The test process keeps the write end of that stdin pipe open and never
/// closes it; the kernel closes it when the process exits, whether it returns,
/// panics, aborts or is killed. So the server cannot outlive the tests even
/// though no destructor runs for a `static`. Details:
/// - a non-interactive shell gives background jobs /dev/null as stdin, so the
///   pipe is parked on fd 3 and handed to the watchdog explicitly;
/// - the watchdog also sends SIGCONT, in case the server was frozen by
///   [`Cluster::sigstop`] when the tests ended;
/// - when the server exits by itself (e.g. [`Cluster::stop`]), the shell
///   exits and kills the watchdog first, so no signal is ever sent to a pid
///   that may have been reused.
const SERVER_WRAPPER: &str = r#"
exec 3<&0 </dev/null
"$@" 3<&- &
pid=$!
( cat >/dev/null
  kill -INT "$pid" 2>/dev/null
  pkill -CONT -P "$pid" 2>/dev/null
  kill -CONT "$pid" 2>/dev/null ) <&3 3<&- &
watchdog=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
"#;

/// Deletes the cluster's directory once our stdin reaches end-of-file (i.e.
/// the test process is gone, or a private [`Cluster`] was dropped) and the
/// server has removed `postmaster.pid` on its way out (60 s at most).
const JANITOR: &str = r#"
cat >/dev/null
i=0
while [ -e "$1/data/postmaster.pid" ] && [ "$i" -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
rm -rf -- "$1"
"#;

/// The LiteLLM schema a test database is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Schema {
    /// `litellm-proxy-extras` 0.4.110, the newest published release.
    New,
    /// `litellm-proxy-extras` 0.1.1, the oldest release the exporter supports.
    Old,
}

impl Schema {
    /// The `litellm-proxy-extras` version.
    pub fn version(self) -> &'static str {
        match self {
            Schema::New => "0.4.110",
            Schema::Old => "0.1.1",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Schema::New => "litellm_tpl_new",
            Schema::Old => "litellm_tpl_old",
        }
    }

    fn slot(self) -> usize {
        match self {
            Schema::New => 0,
            Schema::Old => 1,
        }
    }

    /// The migrations directory: `$LITELLM_SCHEMA_DIR_<version with _>` or
    /// `<repo>/.cache/litellm-schemas/<version>/litellm_proxy_extras/migrations`.
    pub fn migrations_dir(self) -> PathBuf {
        let var = format!("LITELLM_SCHEMA_DIR_{}", self.version().replace('.', "_"));
        match std::env::var_os(&var) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".cache/litellm-schemas")
                .join(self.version())
                .join("litellm_proxy_extras/migrations"),
        }
    }
}

/// A database of its own for one test, cloned from a schema template.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:PORT/NAME`
    pub url: String,
    pub port: u16,
}

impl TestDb {
    fn new(name: String, port: u16) -> TestDb {
        let url = format!("postgres://postgres@127.0.0.1:{port}/{name}");
        TestDb { name, url, port }
    }

    /// A connection as role `postgres`; its connection task is spawned on the
    /// current tokio runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url));
        tokio::spawn(async move {
            // Errors here are the test's business (e.g. a deliberate outage);
            // queries on the client report them.
            let _ = connection.await;
        });
        client
    }

    /// Runs `sql` (one or more statements) with `psql -Atq` and returns its
    /// output without the trailing newline; panics with psql's stderr on error.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`TestDb::psql`] but returns the error (e.g. while the server is down).
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        psql(self.port, &self.name, sql)
    }

    /// Runs `sql/setup/readonly_role.sql` (the README's setup of the exporter's role) for
    /// `role` with `password`, and returns this database's URL as that role.
    pub fn read_only_role(&self, role: &str, password: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/setup/readonly_role.sql");
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", &self.url, "-v", &format!("role={role}")])
            .args(["-v", &format!("password={password}"), "-f", script])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url
            .replace("postgres@", &format!("{role}:{password}@"))
    }
}

/// A running PostgreSQL server on a temporary directory.
pub struct Cluster {
    /// Temporary directory: `data/`, the unix socket, `postgres.log`, scripts.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// Run server binaries as user `postgres` through `runuser` (we are root).
    as_postgres: bool,
    /// The server wrapper (see [`SERVER_WRAPPER`]); `None` while stopped.
    server: Mutex<Option<Piped>>,
    /// `None` when `LITELLM_TEST_KEEP_PG` is set.
    janitor: Option<Piped>,
    templates: [OnceLock<Result<(), String>>; 2],
    /// `CREATE DATABASE ... TEMPLATE t` fails if anything else is connected
    /// to `t`; clones go one at a time.
    clone_lock: Mutex<()>,
}

/// A child process and the write end of its stdin pipe, which we keep open
/// until we want the child to act.
struct Piped {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Piped {
    /// Closes the pipe and waits (bounded) for the child to exit.
    fn close_and_wait(&mut self, timeout: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The cluster shared by every test of this process, started on first use.
///
/// Tests run in parallel against it, so do not [`Cluster::stop`] or
/// [`Cluster::sigstop`] it: use a [`private_cluster`] for outages.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(Cluster::boot) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e}"),
    }
}

/// A cluster of the caller's own (own directory and port), for tests that
/// stop or freeze the server. Stopped and deleted when dropped. Its schema
/// templates are built on first use, like the shared cluster's.
pub fn private_cluster() -> Cluster {
    Cluster::boot().unwrap_or_else(|e| panic!("{e}"))
}

/// A new database with `schema`, on the shared [`cluster`].
pub fn fresh_db(schema: Schema) -> TestDb {
    cluster().fresh_db(schema)
}

impl Cluster {
    fn boot() -> Result<Cluster, String> {
        let t0 = Instant::now();
        let bin = pg_bin();
        for tool in ["initdb", "postgres", "psql", "pg_isready"] {
            if !bin.join(tool).is_file() {
                return Err(format!(
                    "PostgreSQL 15 binary {tool} not found in {}: install PostgreSQL 15 \
                     (e.g. `apt-get install postgresql-15`) or set PG_BIN to its bin directory",
                    bin.display()
                ));
            }
        }
        let as_postgres = running_as_root();
        if as_postgres && !run_ok(Command::new("id").args(["-u", "postgres"])) {
            return Err(concat!(
                "the tests run as root, so PostgreSQL must run as user `postgres`, which does ",
                "not exist: create it (e.g. `useradd -r postgres`) or run the tests as non-root"
            )
            .into());
        }
        let dir = make_dir(as_postgres)?;
        let data = dir.join("data");
        let log = dir.join("postgres.log");

        // The janitor first, so that the directory goes away even if the
        // remaining steps fail.
        let keep = std::env::var_os("LITELLM_TEST_KEEP_PG").is_some_and(|v| !v.is_empty());
        let janitor = if keep {
            eprintln!("LITELLM_TEST_KEEP_PG: keeping {}", dir.display());
            None
        } else {
            Some(spawn_piped(
                Command::new("sh")
                    .args(["-c", JANITOR, "litellm-test-pg-janitor"])
                    .arg(&dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?)
        };

        let port = free_port()?;
        let mut cluster = Cluster {
            dir,
            data,
            log,
            port,
            as_postgres,
            server: Mutex::new(None),
            janitor,
            templates: [OnceLock::new(), OnceLock::new()],
            clone_lock: Mutex::new(()),
        };

        let mut initdb = cluster.server_command(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            // No fsync of the new data directory: it is thrown away anyway.
            .arg("--no-sync");
        let out = output(&mut initdb)?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}):\n{}",
                out.status,
                output_text(&out)
            ));
        }

        // Settings go into postgresql.conf, so that start() after stop()
        // needs nothing but the data directory.
        let conf = format!(
            "\n# litellm-exporter tests (tests/support/pg.rs)\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 200\n\
             shared_preload_libraries = 'pg_stat_statements'\n\
             logging_collector = off\n",
            socket_dir = conf_quote(&cluster.dir.display().to_string()),
        );
        OpenOptions::new()
            .append(true)
            .open(cluster.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| {
                format!(
                    "cannot append to {}/postgresql.conf: {e}",
                    cluster.data.display()
                )
            })?;

        let server = cluster.spawn_server()?;
        *cluster.server.get_mut().unwrap() = Some(server);
        if std::env::var_os("LITELLM_TEST_PG_TIMINGS").is_some() {
            eprintln!("pg cluster on port {port} ready in {:?}", t0.elapsed());
        }
        Ok(cluster)
    }

    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// A new, uniquely named database cloned from the `schema` template
    /// (built on first use, which applies all migrations and takes seconds).
    pub fn fresh_db(&self, schema: Schema) -> TestDb {
        self.ensure_template(schema);
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{}_{n}", &schema.template()["litellm_tpl_".len()..]);
        let _clone = lock(&self.clone_lock);
        let t0 = Instant::now();
        self.psql_ok(
            "postgres",
            &format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
                schema.template()
            ),
        );
        if std::env::var_os("LITELLM_TEST_PG_TIMINGS").is_some() {
            eprintln!("cloned {name} in {:?}", t0.elapsed());
        }
        TestDb::new(name, self.port)
    }

    /// A new, uniquely named database without any LiteLLM table.
    pub fn empty_db(&self) -> TestDb {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_empty_{n}");
        self.psql_ok("postgres", &format!("CREATE DATABASE \"{name}\""));
        TestDb::new(name, self.port)
    }

    /// Runs `sql` with `psql -Atq` in database `db`; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.psql_ok(db, sql)
    }

    /// Shuts the server down (SIGINT: fast shutdown, sessions are terminated)
    /// and waits until it has exited and the port is closed.
    pub fn stop(&self) {
        let mut server = lock(&self.server);
        let Some(mut running) = server.take() else {
            panic!("Cluster::stop: the server is not running");
        };
        let pid = self.postmaster_pid();
        signal("-INT", &pid.to_string());
        // The wrapper exits right after the postmaster, whose exit comes
        // after every backend's and after removing postmaster.pid.
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match running.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                Ok(None) => panic!(
                    "postgres (pid {pid}) did not stop within {STOP_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(30)
                ),
                Err(e) => panic!("cannot wait for the postgres wrapper: {e}"),
            }
        }
        drop(running.stdin.take());
        while port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts connections after postgres stopped",
                self.port
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again after [`Cluster::stop`], with the same data
    /// directory and port, and waits until it accepts connections.
    pub fn start(&self) {
        let mut server = lock(&self.server);
        assert!(
            server.is_none(),
            "Cluster::start: the server is already running"
        );
        *server = Some(self.spawn_server().unwrap_or_else(|e| panic!("{e}")));
    }

    /// Freezes the postmaster and all its children (SIGSTOP): the port stays
    /// open but nothing answers, so connections and queries hang.
    pub fn sigstop(&self) {
        let pid = self.postmaster_pid().to_string();
        // Postmaster first, so that it forks no child we would miss.
        signal("-STOP", &pid);
        let _ = Command::new("pkill").args(["-STOP", "-P", &pid]).status();
    }

    /// Thaws what [`Cluster::sigstop`] froze.
    pub fn sigcont(&self) {
        let pid = self.postmaster_pid().to_string();
        let _ = Command::new("pkill").args(["-CONT", "-P", &pid]).status();
        signal("-CONT", &pid);
    }

    fn postmaster_pid(&self) -> u32 {
        let file = self.data.join("postmaster.pid");
        let text = fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e} (is the server running?)",
                file.display()
            )
        });
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid on the first line of {}", file.display()))
    }

    /// A command for a server binary: through `runuser -u postgres` as root.
    fn server_command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn spawn_server(&self) -> Result<Piped, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.server_command(Path::new("sh"));
        cmd.args(["-c", SERVER_WRAPPER, "litellm-test-pg"])
            .arg(pg_bin().join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .stdout(log)
            .stderr(log2);
        let mut proc = spawn_piped(&mut cmd)?;

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(format!(
                    "postgres exited during startup ({status}); log {}:\n{}",
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            let ready = run_ok(
                Command::new(pg_bin().join("pg_isready"))
                    .args([
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-t",
                        "1",
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                    ])
                    .arg("-p")
                    .arg(self.port.to_string()),
            );
            if ready {
                return Ok(proc);
            }
            if Instant::now() >= deadline {
                proc.close_and_wait(STOP_TIMEOUT);
                return Err(format!(
                    "postgres not ready on 127.0.0.1:{} after {READY_TIMEOUT:?}; log {}:\n{}",
                    self.port,
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            sleep(Duration::from_millis(25));
        }
    }

    fn ensure_template(&self, schema: Schema) {
        let built = self.templates[schema.slot()].get_or_init(|| self.build_template(schema));
        if let Err(e) = built {
            panic!("{e}");
        }
    }

    /// Creates the template database and applies every migration to it in
    /// one psql session, in folder-name order (Prisma's order).
    fn build_template(&self, schema: Schema) -> Result<(), String> {
        let t0 = Instant::now();
        let dir = schema.migrations_dir();
        if !dir.is_dir() {
            return Err(format!(
                "LiteLLM schema {} not found at {}: run scripts/fetch-schemas",
                schema.version(),
                dir.display()
            ));
        }
        let mut migrations: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("migration.sql")))
            .filter(|sql| sql.is_file())
            .collect();
        // Byte-wise order of the folder names (the common parent sorts equal).
        migrations.sort_by(|a, b| {
            a.as_os_str()
                .as_encoded_bytes()
                .cmp(b.as_os_str().as_encoded_bytes())
        });
        if migrations.is_empty() {
            return Err(format!(
                "LiteLLM schema {}: no */migration.sql under {}: run scripts/fetch-schemas",
                schema.version(),
                dir.display()
            ));
        }

        // Prisma sends each migration as one multi-statement query, which
        // PostgreSQL runs as one implicit transaction; LiteLLM relies on it
        // (`SET LOCAL lock_timeout`). So each migration gets BEGIN/COMMIT,
        // except those with CREATE INDEX CONCURRENTLY, which cannot run in a
        // transaction (LiteLLM keeps them single-statement for that reason).
        // One folder name contains spaces, hence the quoted `\i` paths.
        let mut script = String::from("\\set ON_ERROR_STOP 1\n");
        for sql in &migrations {
            let text = fs::read_to_string(sql)
                .map_err(|e| format!("cannot read {}: {e}", sql.display()))?;
            let in_transaction = !text.to_ascii_lowercase().contains("concurrently");
            let path = sql
                .display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('\'', "''");
            if in_transaction {
                let _ = writeln!(script, "BEGIN;\n\\i '{path}'\nCOMMIT;");
            } else {
                let _ = writeln!(script, "\\i '{path}'");
            }
        }
        let script_path = self.dir.join(format!("apply-{}.sql", schema.version()));
        fs::write(&script_path, script)
            .map_err(|e| format!("cannot write {}: {e}", script_path.display()))?;

        let tpl = schema.template();
        psql(self.port, "postgres", &format!("CREATE DATABASE \"{tpl}\""))?;
        let out = output(
            psql_command(self.port, tpl)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
                .arg(&script_path),
        )?;
        if !out.status.success() {
            return Err(format!(
                "applying LiteLLM schema {} ({} migrations from {}) failed ({}):\n{}",
                schema.version(),
                migrations.len(),
                dir.display(),
                out.status,
                output_text(&out)
            ));
        }
        if schema == Schema::New {
            psql(
                self.port,
                tpl,
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
            )?;
        }
        if std::env::var_os("LITELLM_TEST_PG_TIMINGS").is_some() {
            eprintln!(
                "LiteLLM schema {}: {} migrations applied in {:?}",
                schema.version(),
                migrations.len(),
                t0.elapsed()
            );
        }
        Ok(())
    }

    fn psql_ok(&self, db: &str, sql: &str) -> String {
        psql(self.port, db, sql).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Cluster {
    /// Only private clusters are dropped (statics never are): stop the
    /// server, then let the janitor delete the directory.
    fn drop(&mut self) {
        let server = self.server.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut running) = server.take() {
            // The server may have been left frozen by a failing test.
            if let Ok(text) = fs::read_to_string(self.data.join("postmaster.pid")) {
                if let Some(pid) = text.lines().next().map(str::trim) {
                    let _ = Command::new("pkill").args(["-CONT", "-P", pid]).status();
                    let _ = Command::new("kill").args(["-CONT", pid]).status();
                }
            }
            running.close_and_wait(STOP_TIMEOUT);
        }
        if let Some(janitor) = &mut self.janitor {
            janitor.close_and_wait(STOP_TIMEOUT);
        }
    }
}

fn pg_bin() -> PathBuf {
    match std::env::var_os("PG_BIN") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_PG_BIN),
    }
}

/// `psql` as role `postgres` over TCP, ignoring any ~/.psqlrc.
fn psql_command(port: u16, db: &str) -> Command {
    let mut cmd = Command::new(pg_bin().join("psql"));
    cmd.args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-d", db])
        .arg("-p")
        .arg(port.to_string());
    cmd
}

fn psql(port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = output(
        psql_command(port, db)
            .args(["-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(sql),
    )?;
    if !out.status.success() {
        return Err(format!(
            "psql -d {db} -c {sql:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    while text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn spawn_piped(cmd: &mut Command) -> Result<Piped, String> {
    // Rust creates pipes close-on-exec, so the write end stays with us and is
    // not inherited by any other child we spawn.
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let stdin = child.stdin.take();
    Ok(Piped { child, stdin })
}

fn signal(sig: &str, pid: &str) {
    let out = output(Command::new("kill").args([sig, pid])).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "kill {sig} {pid} failed: {}",
        output_text(&out)
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A fresh temporary directory, owned by `postgres` when `as_postgres`.
/// Falls back to /tmp when user `postgres` cannot reach `$TMPDIR` (e.g. a
/// parent directory that is not traversable).
fn make_dir(as_postgres: bool) -> Result<PathBuf, String> {
    let mut bases = vec![std::env::temp_dir()];
    if as_postgres && bases[0] != Path::new("/tmp") {
        bases.push(PathBuf::from("/tmp"));
    }
    let mut problems = Vec::new();
    for base in bases {
        let dir = tempfile::Builder::new()
            .prefix("litellm-exporter-pg.")
            .tempdir_in(&base)
            .map_err(|e| {
                format!(
                    "cannot create a temporary directory in {}: {e}",
                    base.display()
                )
            })?
            .keep();
        if !as_postgres {
            return Ok(dir);
        }
        let usable = run_ok(Command::new("chown").arg("postgres:").arg(&dir))
            && run_ok(
                Command::new("runuser")
                    .args(["-u", "postgres", "--", "test", "-w"])
                    .arg(&dir)
                    .args(["-a", "-x"])
                    .arg(&dir),
            );
        if usable {
            return Ok(dir);
        }
        problems.push(dir.display().to_string());
        let _ = fs::remove_dir_all(&dir);
    }
    Err(format!(
        "user postgres cannot use {}: make the parent directories traversable \
         (chmod o+x) or point TMPDIR to a directory such as /tmp",
        problems.join(" nor ")
    ))
}

fn free_port() -> Result<u16, String> {
    // Bind port 0, note what the kernel chose, release it for postgres.
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    Ok(port)
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn log_tail(log: &Path, lines: usize) -> String {
    let text =
        fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Quotes a value for postgresql.conf.
fn conf_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves nothing half-done
    // that matters to the next one.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// TLS clusters (tests/it/tls.rs, tests/it/secrets.rs): a server with `ssl = on`, a certificate
// signed by a CA made here with rcgen, and a pg_hba.conf that accepts TLS connections only.
// ---------------------------------------------------------------------------

/// The host name in the TLS server's certificate (besides the address 127.0.0.1). Nothing
/// resolves it: URLs name it as the host and reach the server with `hostaddr=127.0.0.1`.
pub const TLS_HOST: &str = "pg.test";

/// The CA files of a TLS cluster (in its directory, deleted with it).
pub struct TlsFiles {
    /// The CA that signed the server certificate (PEM).
    pub ca: PathBuf,
    /// An unrelated CA (another name, another key) that signed nothing the server has.
    pub other_ca: PathBuf,
    /// A client certificate for role [`CERT_ROLE`], signed by `ca`, and its key (PEM).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// The role that logs in with a client certificate only (pg_hba `cert`); it exists in the
/// cluster of [`tls_cluster`] and may read every table.
pub const CERT_ROLE: &str = "cert_reader";

static TLS_CLUSTER: OnceLock<(Cluster, TlsFiles)> = OnceLock::new();

/// A cluster shared by the TLS tests of this process (do not stop it). pg_hba.conf has only
/// `hostssl` lines: role `postgres` is trusted (the harness's psql negotiates TLS by itself),
/// [`CERT_ROLE`] needs a client certificate signed by the test CA, every other role needs its
/// SCRAM password, and a plain connection is refused.
pub fn tls_cluster() -> &'static (Cluster, TlsFiles) {
    TLS_CLUSTER.get_or_init(|| {
        let cluster = private_cluster();
        let files = cluster.enable_tls();
        (cluster, files)
    })
}

impl Cluster {
    /// Makes a CA and a server certificate for [`TLS_HOST`] and 127.0.0.1, turns `ssl` on,
    /// restricts pg_hba.conf to `hostssl`, reloads, and checks that a plain connection is
    /// refused and a TLS one accepted.
    fn enable_tls(&self) -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let make_ca = |name: &str| {
            let key = KeyPair::generate().expect("CA key");
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            (p.self_signed(&key).expect("CA certificate"), key)
        };
        let (ca, ca_key) = make_ca("litellm-exporter test CA");
        let (other_ca, _) = make_ca("litellm-exporter unrelated test CA");
        let server_key = KeyPair::generate().expect("server key");
        let mut p = CertificateParams::new(vec![TLS_HOST.to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        p.distinguished_name.push(DnType::CommonName, TLS_HOST);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = p
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");
        // pg_hba `cert` maps the certificate's common name to the role.
        let client_key = KeyPair::generate().expect("client key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
        p.distinguished_name.push(DnType::CommonName, CERT_ROLE);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = p
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client certificate");

        let tls_dir = self.dir.join("tls");
        fs::create_dir_all(&tls_dir).expect("tls dir");
        let files = TlsFiles {
            ca: tls_dir.join("ca.pem"),
            other_ca: tls_dir.join("other-ca.pem"),
            client_cert: tls_dir.join("client.pem"),
            client_key: tls_dir.join("client.key"),
        };
        fs::write(&files.ca, ca.pem()).expect("write ca.pem");
        fs::write(&files.client_cert, client.pem()).expect("write client.pem");
        fs::write(&files.client_key, client_key.serialize_pem()).expect("write client.key");
        fs::write(&files.other_ca, other_ca.pem()).expect("write other-ca.pem");
        // PostgreSQL refuses a key readable by others; it reads both files as its own user.
        let crt = self.data.join("server.crt");
        let key = self.data.join("server.key");
        let root = self.data.join("root.crt");
        fs::write(&root, ca.pem()).expect("write root.crt");
        fs::write(&crt, server.pem()).expect("write server.crt");
        fs::write(&key, server_key.serialize_pem()).expect("write server.key");
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");
        }
        if self.as_postgres {
            assert!(
                run_ok(
                    Command::new("chown")
                        .arg("postgres:")
                        .args([&crt, &key, &root])
                ),
                "cannot chown the server certificate to postgres"
            );
        }
        OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut f| {
                f.write_all(
                    b"\n# TLS (tests/support/pg.rs, enable_tls)\nssl = on\n\
                      ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                      ssl_ca_file = 'root.crt'\n",
                )
            })
            .expect("append TLS settings");
        fs::write(
            self.data.join("pg_hba.conf"),
            "# TLS only (tests/support/pg.rs, enable_tls)\n\
             local all all trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n\
             hostssl all cert_reader 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        self.psql_ok(
            "postgres",
            &format!("CREATE ROLE {CERT_ROLE} LOGIN; GRANT pg_read_all_data TO {CERT_ROLE}"),
        );
        self.psql_ok("postgres", "SELECT pg_reload_conf()");

        // The reload is asynchronous: wait until it shows.
        let attempt = |sslmode: &str| {
            output(
                psql_command(self.port, "postgres")
                    .env("PGSSLMODE", sslmode)
                    .args([
                        "-Atqc",
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    ]),
            )
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                )
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let plain_refused = !attempt("disable").0;
            let tls_ok = attempt("require") == (true, "t".to_string());
            if plain_refused && tls_ok {
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "TLS not in force after reload (plain refused: {plain_refused}, TLS works: \
                 {tls_ok}); log tail:\n{}",
                self.log_tail(30)
            );
            sleep(Duration::from_millis(100));
        }
    }
}

impl TestDb {
    /// `url` for a TLS cluster: TLS required, certificate not checked (the harness's own
    /// connections; the tests check certificates through the exporter).
    pub fn tls_url(&self) -> String {
        format!("{}?sslmode=require", self.url)
    }

    /// A connection as role `postgres` over TLS, checking the server against `ca`; for the
    /// clusters of [`tls_cluster`], which refuse plain connections.
    pub async fn tls_client(&self, ca: &Path) -> tokio_postgres::Client {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
        let (client, connection) = tokio_postgres::connect(&self.tls_url(), tls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {} over TLS: {e}", self.url));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

// ---- Streaming replicas --------------------------------------------------------------------
// A hot-standby replica of a private cluster, for the exporter's read-replica tests. Everything
// about replicas is in this block.

impl Cluster {
    /// A streaming hot-standby replica of this cluster, made with `pg_basebackup -R` into a
    /// directory of its own and started on its own port. `extra_conf` is appended to the
    /// replica's postgresql.conf (e.g. `max_standby_streaming_delay = 0`). Databases already on
    /// the primary exist on the replica; reach them with [`Cluster::db`]. Stopped and deleted
    /// when dropped, like any private cluster; drop it before its primary.
    ///
    /// The primary needs `wal_level` of at least `replica` and `max_wal_senders` > 0 (both
    /// PostgreSQL 15 defaults, checked here since changing them needs a restart) and a
    /// `replication` line in pg_hba.conf for 127.0.0.1, added here if missing.
    pub fn replica(&self, extra_conf: &str) -> Cluster {
        self.allow_replication();
        let bin = pg_bin();
        assert!(
            bin.join("pg_basebackup").is_file(),
            "pg_basebackup not found in {}: install PostgreSQL 15 (postgresql-15) or set PG_BIN",
            bin.display()
        );
        let as_postgres = running_as_root();
        let dir = make_dir(as_postgres).unwrap_or_else(|e| panic!("{e}"));
        let janitor = spawn_piped(
            Command::new("sh")
                .args(["-c", JANITOR, "litellm-test-pg-janitor"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let mut replica = Cluster {
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            dir,
            port,
            as_postgres,
            server: Mutex::new(None),
            janitor: Some(janitor),
            templates: [OnceLock::new(), OnceLock::new()],
            clone_lock: Mutex::new(()),
        };
        // -R writes standby.signal and primary_conninfo; -X stream copies the WAL needed to
        // reach a consistent state; -c fast does not wait for a scheduled checkpoint.
        let mut cmd = replica.server_command(&bin.join("pg_basebackup"));
        cmd.arg("-D")
            .arg(&replica.data)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
            .args(["-c", "fast", "--no-sync"])
            .arg("-p")
            .arg(self.port.to_string());
        let out = output(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "pg_basebackup from port {} failed ({}):\n{}",
            self.port,
            out.status,
            output_text(&out)
        );
        // The copied postgresql.conf is the primary's; later lines win.
        let conf = format!(
            "\n# replica (tests/support/pg.rs)\nport = {port}\n\
             unix_socket_directories = '{}'\nhot_standby = on\n{extra_conf}\n",
            conf_quote(&replica.dir.display().to_string())
        );
        OpenOptions::new()
            .append(true)
            .open(replica.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot configure the replica: {e}"));
        let server = replica.spawn_server().unwrap_or_else(|e| panic!("{e}"));
        *replica.server.get_mut().unwrap() = Some(server);
        assert_eq!(
            replica.psql("postgres", "SELECT pg_is_in_recovery()"),
            "t",
            "the replica is not in recovery; log:\n{}",
            replica.log_tail(30)
        );
        replica
    }

    /// A handle on database `name`, which exists on this cluster already (e.g. a database of
    /// the primary, on a replica).
    pub fn db(&self, name: &str) -> TestDb {
        TestDb::new(name.to_string(), self.port)
    }

    /// Waits until this replica has replayed everything `primary` had written when called.
    pub fn wait_replayed(&self, primary: &Cluster) {
        let lsn = primary.psql("postgres", "SELECT pg_current_wal_lsn()");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let done = self.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            );
            if done == "t" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica did not replay up to {lsn} within {READY_TIMEOUT:?}; log:\n{}",
                self.log_tail(30)
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn allow_replication(&self) {
        let wal_level = self.psql("postgres", "SHOW wal_level");
        let senders: i64 = self
            .psql("postgres", "SHOW max_wal_senders")
            .parse()
            .unwrap_or(0);
        assert!(
            (wal_level == "replica" || wal_level == "logical") && senders > 0,
            "the primary cannot stream WAL (wal_level = {wal_level}, max_wal_senders = {senders})"
        );
        let hba = self.data.join("pg_hba.conf");
        let text = fs::read_to_string(&hba).unwrap_or_else(|e| panic!("{}: {e}", hba.display()));
        let allowed = text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 5 && f[0] == "host" && f[1] == "replication" && f[3] == "127.0.0.1/32"
        });
        if !allowed {
            OpenOptions::new()
                .append(true)
                .open(&hba)
                .and_then(|mut f| f.write_all(b"\nhost replication postgres 127.0.0.1/32 trust\n"))
                .unwrap_or_else(|e| panic!("cannot append to {}: {e}", hba.display()));
            self.psql("postgres", "SELECT pg_reload_conf()");
        }
    }
}
