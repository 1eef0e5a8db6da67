-- The optional step LiteLLM's partition script leaves commented out: copy the last 30 days of the
-- legacy table into the partitioned one (the copies are new row versions of the same requests).
INSERT INTO "LiteLLM_SpendLogs"
SELECT * FROM "LiteLLM_SpendLogs_legacy"
WHERE "startTime" >= now() - interval '30 days';
