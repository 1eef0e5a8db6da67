-- Which spend log a state file belongs to, whatever the route to it (host name, port, pooler,
-- role): the cluster's system identifier (kept by its physical replicas and restored backups),
-- the database's OID and the OID of the "LiteLLM_SpendLogs" table the search path finds (two
-- LiteLLM schemas in one database are two spend logs).
-- Purpose: a state file is reused after a credential rotation or a move behind PgBouncer, and
--          discarded for another database.
-- Minimum: PostgreSQL 9.6 (pg_control_system). Privilege: EXECUTE on pg_control_system(), which
--          PostgreSQL grants to PUBLIC; without it the exporter falls back to the URL.
SELECT (SELECT system_identifier FROM pg_control_system())::text AS system_id,
       (SELECT oid FROM pg_database WHERE datname = current_database())::text AS database_oid,
       to_regclass('"LiteLLM_SpendLogs"')::oid::text AS spend_logs_oid
