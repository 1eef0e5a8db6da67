"""A throwaway PostgreSQL 15 cluster with LiteLLM's schema, for the Python scripts (scripts/bench,
scripts/soak). Standard library only. The integration tests have their own harness in Rust
(tests/support/pg.rs) and the shell scripts source scripts/lib/pg.sh; this is their Python twin.

What it owns: making a cluster in a directory (initdb once, so that a seeded cluster can be reused
by later runs), starting it on a free port on 127.0.0.1, stopping it, its URLs, psql, and
creating a database with LiteLLM's real migrations (fetched by scripts/fetch-schemas).

As root, PostgreSQL refuses to run, so the server binaries run as user `postgres` through
`runuser` and the directory is handed to that user; psql connects over TCP as role `postgres`
with trust authentication and runs as the caller.
"""

import os
import shutil
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# The newest published litellm-proxy-extras, the schema the exporter is tested against.
SCHEMA_VERSION = "0.4.110"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def migrations_dir(version=SCHEMA_VERSION):
    """`$LITELLM_SCHEMA_DIR_<version with _>` or the one scripts/fetch-schemas fills."""
    env = os.environ.get("LITELLM_SCHEMA_DIR_" + version.replace(".", "_"))
    if env:
        return Path(env)
    return ROOT / ".cache" / "litellm-schemas" / version / "litellm_proxy_extras" / "migrations"


class Pg:
    """A throwaway cluster in `dir`, made once and reused while its seed parameters match."""

    def __init__(self, dir: Path):
        self.dir = dir
        self.port = free_port()

    def start(self):
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).is_file():
                raise SystemExit(f"PostgreSQL 15 binary {tool} not found in {PG_BIN}: install "
                                 "postgresql-15 or set PG_BIN to its bin directory")
        data = self.dir / "data"
        if not data.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres")
                self.dir.chmod(0o700)
            subprocess.run(as_pg([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                  "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
                           check=True, stdout=subprocess.DEVNULL)
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off "
                "-c shared_preload_libraries=pg_stat_statements -c max_connections=100")
        subprocess.run(as_pg([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                              str(self.dir / "server.log"), "-w", "start", "-o", opts]),
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast",
                              "-w", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, db="litellm", user="postgres", password=None):
        auth = f"{user}:{password}" if password else user
        return f"postgres://{auth}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql, db="litellm", out=None):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                            "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db],
                           input=sql, text=True, capture_output=out is None,
                           stdout=out, check=True)
        return (r.stdout or "").strip() if out is None else ""

    def schema(self, db="litellm", version=SCHEMA_VERSION):
        """Creates database `db` with LiteLLM's schema: every migration of litellm-proxy-extras
        `version`, in folder-name order, in one psql session. Prisma sends a migration as one
        multi-statement query, i.e. one implicit transaction, and LiteLLM relies on it (`SET
        LOCAL`), so each gets BEGIN/COMMIT; except those with CREATE INDEX CONCURRENTLY, which
        cannot run in a transaction."""
        src = migrations_dir(version)
        if not src.is_dir():
            subprocess.run([str(ROOT / "scripts" / "fetch-schemas")], check=True,
                           stdout=subprocess.DEVNULL)
        files = sorted(src.glob("*/migration.sql"), key=lambda p: os.fsencode(p))
        if not files:
            raise SystemExit(f"LiteLLM schema {version}: no */migration.sql under {src}: "
                             "run scripts/fetch-schemas")
        lines = []
        for f in files:
            # Folder names may hold spaces: quote the \i path.
            path = str(f).replace("\\", "\\\\").replace("'", "''")
            if "concurrently" in f.read_text().lower():
                lines.append(f"\\i '{path}'")
            else:
                lines.append(f"BEGIN;\n\\i '{path}'\nCOMMIT;")
        self.psql(f'CREATE DATABASE "{db}"', db="postgres")
        try:
            self.psql("\n".join(lines) + "\n", db=db)
        except subprocess.CalledProcessError as e:
            raise SystemExit(f"applying LiteLLM schema {version} ({len(files)} migrations from "
                             f"{src}) failed:\n{e.stderr}") from None
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db=db)
