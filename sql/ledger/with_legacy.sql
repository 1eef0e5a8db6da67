-- The "startTime"s of the spend log and of "LiteLLM_SpendLogs_legacy" together, for the
-- statements that plan the catch-up's chunks (bounds, next_start, chunk_end) once LiteLLM's
-- partitioning script has moved the old table aside: a rebuild then reads both, and the chunks
-- must follow the rows of both (the legacy table holds nearly all of the history at first).
-- PostgreSQL pushes the outer conditions into both branches and merges their "startTime" index
-- scans in order. Copied rows are counted twice here; only the chunk sizes use these counts.
(SELECT "startTime" FROM "LiteLLM_SpendLogs"
 UNION ALL
 SELECT "startTime" FROM "LiteLLM_SpendLogs_legacy")
