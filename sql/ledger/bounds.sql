-- The oldest finite startTime, to plan the chunks of the start-up rebuild.
-- Uses the "startTime" index (an index endpoint read, not a scan). Privilege: SELECT.
SELECT (extract(epoch FROM min("startTime")) * 1000)::bigint
FROM "LiteLLM_SpendLogs"
WHERE "startTime" > '-infinity'::timestamp
