-- The read transaction's own snapshot and the database clock, taken first in every ledger read.
-- Purpose: xmin bounds which transactions may commit after this read (the next read asks only for
--          rows created by transactions >= it); xmax widens 32-bit xmin values; now_ms is the
--          database's UTC wall clock, the same clock LiteLLM's startTime is compared with;
--          has_legacy says whether "LiteLLM_SpendLogs_legacy" exists and may be read (the
--          same test as the schema detection's, which sees only tables the role may use).
-- Minimum: PostgreSQL 13. Privilege: none.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS snap_xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS snap_xmax,
       (extract(epoch FROM (now() AT TIME ZONE 'UTC')) * 1000)::bigint AS now_ms,
       -- Whether LiteLLM's partitioning script has moved an older spend log aside, which is
       -- then read too (a read planned without it must be planned again).
       coalesce(has_table_privilege(to_regclass('"LiteLLM_SpendLogs_legacy"'), 'SELECT'), false)
         AS has_legacy
