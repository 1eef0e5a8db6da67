# Throwaway PostgreSQL with LiteLLM's schema, for the demo and the benchmarks (sourced, not run).
# The integration tests have their own Rust harness (tests/support); this is the shell twin.
# Usage: source scripts/lib/pg.sh; pg_start DIR; pg_schema DB [VERSION]; ...; pg_stop

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

as_pg() {
  # As root, the server must run as an unprivileged user.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_start() {
  PG_DIR=$1
  PG_PORT=${PG_PORT:-$(free_port)}
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; chmod 700 "$PG_DIR"; fi
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C >"$PG_DIR/initdb.log"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start -o \
    "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
     -c full_page_writes=off -c shared_preload_libraries=pg_stat_statements ${PG_EXTRA_OPTS:-}" >/dev/null
  export PG_PORT PG_DIR
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"; }

# Creates database $1 with LiteLLM's schema (litellm-proxy-extras $2, default 0.4.110), applying
# the migrations in folder-name order in one psql session, each in a transaction like Prisma does.
pg_schema() {
  local db=$1 ver=${2:-0.4.110}
  local dir="$ROOT/.cache/litellm-schemas/$ver/litellm_proxy_extras/migrations"
  [ -d "$dir" ] || "$ROOT/scripts/fetch-schemas" >/dev/null
  psql -q -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
  local script="$PG_DIR/apply-$db.sql"
  : >"$script"
  while IFS= read -r f; do
    if grep -qi concurrently "$f"; then
      printf "\\\\i '%s'\n" "$f" >>"$script"
    else
      printf "BEGIN;\n\\\\i '%s'\nCOMMIT;\n" "$f" >>"$script"
    fi
  done < <(find "$dir" -mindepth 2 -maxdepth 2 -name migration.sql | LC_ALL=C sort)
  psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" -f "$script" >/dev/null 2>"$PG_DIR/apply-$db.log"
  psql -q -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
}
