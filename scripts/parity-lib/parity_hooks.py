"""Loaded by the LiteLLM proxy that scripts/parity starts (never by the exporter's tests directly):
the two things the proxy needs from us to run without its Prisma database.

- `user_api_key_auth`: the proxy's documented custom-auth hook (`general_settings.custom_auth`).
  Without its database the proxy cannot look up virtual keys, so this hook plays the key table:
  each of a few fixed keys maps to a key alias, team, team alias, user and organization, the way a
  real key row would. The hashed key is the SHA-256 of the key, as LiteLLM stores tokens.
- `spend_writer`: LiteLLM's own spend-tracking callback (`ProxyDBLogger`, the one the proxy
  registers when it has a database), unchanged, so success and failure rows are built by LiteLLM's
  code path (`update_database` -> `get_logging_payload`). Only its very last step is replaced:
  `_insert_spend_log_to_db`, which would hand the row to Prisma's queue (Prisma's engine binaries
  are not available here), instead INSERTs the row into the throwaway PostgreSQL named by
  $PARITY_DATABASE_URL, which has LiteLLM's real schema. The proxy itself is not given
  DATABASE_URL, so it runs without a database as far as it knows.

Standard library plus what the proxy already imports; rows are written with psql.
"""

import asyncio
import hashlib
import json
import os

from litellm.proxy.db.db_spend_update_writer import DBSpendUpdateWriter
from litellm.proxy.hooks.proxy_track_cost_callback import ProxyDBLogger

# The virtual keys the parity traffic uses. Their identities (everything a key row would give
# the proxy) are repeated by scripts/parity only through the metrics: this table is the one source.
KEYS = {
    "sk-parity-alpha": {"key_alias": "alpha-key", "team_id": "team-red", "team_alias": "red",
                        "user_id": "alice", "org_id": "org-1"},
    "sk-parity-beta": {"key_alias": "beta-key", "team_id": "team-blue", "team_alias": "blue",
                       "user_id": "bob"},
    # A key with no alias, team or user: the "None" labels.
    "sk-parity-gamma": {},
}


async def user_api_key_auth(request, api_key):
    """Returns the key's identity as a UserAPIKeyAuth mapping; unknown keys are refused."""
    if api_key not in KEYS:
        raise Exception(f"parity: unknown key {api_key[:12]}...")
    return {"api_key": hashlib.sha256(api_key.encode()).hexdigest(), **KEYS[api_key]}


_columns = None


async def _psql(sql, **variables):
    """Runs `sql` with psql against $PARITY_DATABASE_URL; `variables` become psql variables
    (quoted with :'name' in the SQL, so values need no escaping here)."""
    args = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    args += ["-d", os.environ["PARITY_DATABASE_URL"]]
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(sql.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"parity: psql failed: {err.decode().strip()}")
    return out.decode()


async def _spend_log_columns():
    """{column: data_type} of LiteLLM_SpendLogs, read once."""
    global _columns
    if _columns is None:
        out = await _psql("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_name = 'LiteLLM_SpendLogs'")
        _columns = dict(line.split("|", 1) for line in out.splitlines() if line)
    return _columns


async def insert_spend_log(payload):
    """INSERTs one spend-log payload. Prisma writes only the columns the payload names (the others
    take their defaults), and JSON columns get the JSON the payload's strings hold, so: only the
    payload's keys that are columns, and strings of jsonb columns parsed. The row goes through
    jsonb_populate_record, which converts each value to its column's type as PostgreSQL does."""
    columns = await _spend_log_columns()
    row = {}
    for name, value in payload.items():
        if name not in columns:
            continue
        if columns[name] == "jsonb" and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        row[name] = value
    names = ", ".join(f'"{n}"' for n in row)
    await _psql(f'INSERT INTO "LiteLLM_SpendLogs" ({names}) SELECT {names} FROM '
                f'jsonb_populate_record(NULL::"LiteLLM_SpendLogs", :\'row\'::jsonb)',
                row=json.dumps(row, default=str))


async def _insert_spend_log_to_db(self, payload, prisma_client=None, spend_logs_url=None,
                                  llm_router=None):
    # Errors are printed, not raised: LiteLLM's writer swallows them too, and scripts/parity
    # notices a missing row by counting rows.
    try:
        await insert_spend_log(payload)
    except Exception as e:
        print(f"parity: spend log {payload.get('request_id')} not written: {e}", flush=True)
    return prisma_client


DBSpendUpdateWriter._insert_spend_log_to_db = _insert_spend_log_to_db

# No spend-event producer: the cost pipeline runs in-process, as with a database and no sidecar.
spend_writer = ProxyDBLogger(None)
