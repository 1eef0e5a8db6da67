-- Which spend log a state file belongs to, whatever the route to it (host name, port, pooler,
-- role): the cluster's system identifier (kept by its physical replicas and restored backups),
-- the database's OID and the OID of the schema where the search path finds "LiteLLM_SpendLogs"
-- (two LiteLLM schemas in one database are two spend logs).
-- Purpose: a state file is reused after a credential rotation or a move behind PgBouncer, and
--          discarded for another database. The schema, not the table, is what stays: LiteLLM's
--          own partitioning and unpartitioning scripts replace the table (a new OID) with one
--          that carries the same history on.
-- Also the OIDs of the spend log and of "LiteLLM_SpendLogs_legacy", which state files written
--          before the schema was recorded named instead (the legacy table is that same table
--          after LiteLLM's partitioning script renamed it).
-- Minimum: PostgreSQL 9.6 (pg_control_system). Privilege: EXECUTE on pg_control_system(), which
--          PostgreSQL grants to PUBLIC; without it the exporter falls back to the URL.
SELECT (SELECT system_identifier FROM pg_control_system())::text AS system_id,
       (SELECT oid FROM pg_database WHERE datname = current_database())::text AS database_oid,
       (SELECT relnamespace FROM pg_class
        WHERE oid = to_regclass('"LiteLLM_SpendLogs"'))::oid::text AS spend_logs_schema,
       to_regclass('"LiteLLM_SpendLogs"')::oid::text AS spend_logs_oid,
       to_regclass('"LiteLLM_SpendLogs_legacy"')::oid::text AS legacy_oid
