-- Run at the start of a poll's read transaction, before its window's rows are read.
-- Purpose: a poll keeps only the row versions written since its window was last read, a test
--          on each row's xmin that no index can answer, so every row of the window is fetched
--          from the table. An index scan fetches them in startTime order, one page visit per row
--          (LiteLLM's batches interleave rows of different start times on a page); a bitmap heap
--          scan of the same "startTime" index visits each page once. Measured on the benchmark's
--          10M-row table, a 470k-row window: 470k page visits in 2.8 s against 95k in 1.2 s.
--          The planner cannot know this: the window's rows are newer than its statistics.
-- Scope: SET LOCAL, this transaction only. Minimum: PostgreSQL 9. Privilege: none.
SET LOCAL enable_indexscan = off
