-- The oldest readable startTime at or after a bound, so that the start-up rebuild jumps over
-- empty years: one row dated centuries ago (bad input) would otherwise cost one query per empty
-- chunk, and delay readiness by minutes.
-- Uses the "startTime" index (an index endpoint read, not a scan). Privilege: SELECT.
-- Placeholder start_times: the spend log, or with LiteLLM_SpendLogs_legacy (sql/ledger/with_legacy.sql).
-- Parameters: $1 the bound (text timestamp, inclusive).
SELECT (extract(epoch FROM min("startTime")) * 1000)::bigint
FROM {{start_times}} s
WHERE "startTime" >= $1::text::timestamp
  AND "startTime" < 'infinity'::timestamp
