-- Whether "LiteLLM_SpendLogs_legacy" exists but the exporter's role may not read it: then the
-- rows only that table holds (the history before LiteLLM's partitioning script, where its
-- optional copy was not run) cannot be counted, and the exporter says what to run.
-- Privilege: none (to_regclass and has_table_privilege work on any table).
SELECT coalesce(NOT has_table_privilege(to_regclass('"LiteLLM_SpendLogs_legacy"'), 'SELECT'), false)
