-- The oldest finite startTime, to plan the chunks of the start-up rebuild.
-- Uses the "startTime" index (an index endpoint read, not a scan). Privilege: SELECT.
SELECT (extract(epoch FROM min("startTime")) * 1000)::bigint
FROM "LiteLLM_SpendLogs"
WHERE "startTime" > '-infinity'::timestamp
  -- An infinite epoch does not fit a bigint; no read reaches +infinity anyway.
  AND "startTime" < 'infinity'::timestamp
