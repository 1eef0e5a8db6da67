-- The condition on a row of "LiteLLM_SpendLogs_legacy" (alias s) that it was not copied into the
-- spend log: LiteLLM's partitioning script (db_scripts/partition_spend_logs.sql) moves the old
-- table aside under that name and optionally copies its last 30 days into the new, partitioned
-- one. A copy keeps request_id and "startTime", so a request is counted from the spend log when
-- it is there, and from the legacy table only otherwise: once, whichever was read first.
-- Appended to project.sql's WHERE; $1 and $2 are its window, repeated here so that the planner
-- reads only the window's partitions of the spend log (a hash anti join, or an index probe per
-- row of the (pruned) partitions).
-- Uses the primary key ("request_id", "startTime") or the "startTime" index of each partition.
AND NOT EXISTS (
    SELECT 1 FROM "LiteLLM_SpendLogs" n
    WHERE n.request_id = s.request_id
      AND n."startTime" = s."startTime"
      AND n."startTime" >= $1::text::timestamp
      AND n."startTime" < $2::text::timestamp)
