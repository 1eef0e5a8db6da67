-- The oldest finite startTime, to plan the chunks of the start-up rebuild.
-- Uses the "startTime" index (an index endpoint read, not a scan). Privilege: SELECT.
-- Placeholder start_times: the spend log, or with LiteLLM_SpendLogs_legacy (sql/ledger/with_legacy.sql).
SELECT (extract(epoch FROM min("startTime")) * 1000)::bigint
FROM {{start_times}} s
WHERE "startTime" > '-infinity'::timestamp
  -- An infinite epoch does not fit a bigint; no read reaches +infinity anyway.
  AND "startTime" < 'infinity'::timestamp
