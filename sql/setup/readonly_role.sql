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

-- Exactly the tables the exporter reads (src/schema.rs TABLES).
SELECT format('GRANT SELECT ON TABLE %I.%I TO %I', table_schema, table_name, :'role')
FROM information_schema.tables
WHERE table_schema = current_schema()
  AND table_name IN ('LiteLLM_SpendLogs', 'LiteLLM_TeamTable', 'LiteLLM_VerificationToken',
                     'LiteLLM_UserTable', 'LiteLLM_OrganizationTable', 'LiteLLM_BudgetTable',
                     'LiteLLM_EndUserTable') \gexec
