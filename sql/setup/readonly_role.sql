-- A least-privilege login role for litellm-exporter: SELECT on exactly the tables it reads,
-- nothing else, sessions read-only by default. Idempotent: run it again after LiteLLM upgrades
-- (tables that do not exist yet are skipped, and granted on the next run).
--
-- Run as the owner of LiteLLM's tables (or a superuser), in LiteLLM's database:
--   psql "$DATABASE_URL" -v role=litellm_exporter -v password='choose-one' \
--        -f sql/setup/readonly_role.sql
-- `role` defaults to litellm_exporter; without `password` the role's password is left unchanged.
-- Then give the exporter: postgresql://litellm_exporter:<password>@<host>:5432/<database>
\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role litellm_exporter
\endif
\if :{?password}
\else
  \set password ''
\endif

SELECT format('CREATE ROLE %I LOGIN', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec

SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'role', :'password')
WHERE :'password' <> '' \gexec

-- Belt and braces: even a mistaken write from this role's sessions is refused by default.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'role') \gexec
SELECT format('ALTER ROLE %I SET statement_timeout = %L', :'role', '30s') \gexec

SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), :'role') \gexec

-- Exactly the tables the exporter reads (src/schema.rs TABLES, and the old spend log LiteLLM's
-- partitioning script keeps as LiteLLM_SpendLogs_legacy). That script and its undoing replace
-- LiteLLM_SpendLogs with a new table, which has none of these grants: run this again after
-- either (the exporter's error says so).
SELECT format('GRANT SELECT ON TABLE %I.%I TO %I', table_schema, table_name, :'role')
FROM information_schema.tables
WHERE table_schema = current_schema()
  AND table_name IN ('LiteLLM_SpendLogs', 'LiteLLM_SpendLogs_legacy', 'LiteLLM_TeamTable', 'LiteLLM_VerificationToken',
                     'LiteLLM_UserTable', 'LiteLLM_OrganizationTable', 'LiteLLM_BudgetTable',
                     'LiteLLM_EndUserTable') \gexec

-- LiteLLM's settings edited in its admin UI: the "general_settings" and "litellm_settings" rows
-- of "LiteLLM_Config", through a view. The table itself also holds "environment_variables" (API
-- keys, encrypted or not) and other secrets, so the role gets no privilege on it: a view runs
-- with its owner's rights, and security_barrier keeps the filter ahead of any function a reader
-- could put in a WHERE clause (a leaky function would otherwise see the other rows).
SELECT format('CREATE OR REPLACE VIEW %I.litellm_exporter_settings WITH (security_barrier) AS '
              'SELECT param_name, param_value FROM %I.%I '
              'WHERE param_name IN (%L, %L)',
              table_schema, table_schema, table_name, 'general_settings', 'litellm_settings')
FROM information_schema.tables
WHERE table_schema = current_schema() AND table_name = 'LiteLLM_Config' \gexec
SELECT format('GRANT SELECT ON TABLE %I.litellm_exporter_settings TO %I', table_schema, :'role')
FROM information_schema.views
WHERE table_schema = current_schema() AND table_name = 'litellm_exporter_settings' \gexec
