-- The planner's estimate of the spend log's rows (pg_class.reltuples, kept by ANALYZE and
-- autovacuum), for the catch-up's progress message ("rows read of about N") and time left.
-- Purpose: a count(*) of tens of millions of rows would cost what the catch-up itself costs;
--          the catalogue's estimate costs nothing and is close enough to say "about".
-- A partitioned spend log (LiteLLM's db_scripts/partition_spend_logs.sql) keeps its rows in its
-- partitions: their estimates are summed, the parent's own (-1 or 0) is not used then.
-- reltuples is -1 for a table never analysed: NULL is returned and the caller falls back to
-- the share of the history's time span read.
-- Privilege: none beyond connecting (pg_class and pg_inherits are readable by every role).
WITH t AS (
  SELECT '"LiteLLM_SpendLogs"'::regclass AS oid
), parts AS (
  SELECT c.reltuples
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = (SELECT oid FROM t)
)
SELECT CASE
  WHEN EXISTS (SELECT 1 FROM parts) THEN
    (SELECT sum(reltuples) FILTER (WHERE reltuples >= 0) FROM parts)::float8
  ELSE
    (SELECT nullif(c.reltuples, -1) FROM pg_class c WHERE c.oid = (SELECT oid FROM t))::float8
END
  -- The old table LiteLLM's partitioning script moved aside is read too, where it exists.
  + coalesce((SELECT c.reltuples FROM pg_class c
              WHERE c.oid = to_regclass('"LiteLLM_SpendLogs_legacy"') AND c.reltuples >= 0), 0)::float8
  AS rows
