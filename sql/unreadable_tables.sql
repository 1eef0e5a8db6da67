-- Which of the given LiteLLM tables exist but may not be read by the exporter's role. The
-- schema detection (schema_columns.sql) sees only tables the role may use, so such a table
-- would look missing: a new table LiteLLM made (its spend-log partitioning scripts replace
-- "LiteLLM_SpendLogs") has none of the grants the setup script gave the old one. The exporter
-- then says what to run.
-- Privilege: none (to_regclass and has_table_privilege work on any table).
-- Parameter: $1 the table names (text[]).
SELECT t::text
FROM unnest($1::text[]) AS t
WHERE to_regclass(quote_ident(t)) IS NOT NULL
  AND NOT has_table_privilege(to_regclass(quote_ident(t)), 'SELECT')
