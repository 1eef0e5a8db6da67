-- Undoes window_plan.sql for the rest of the transaction, or until it runs again.
-- Purpose: chunk_end.sql finds a chunk's end by walking the "startTime" index in order (an
--          index-only scan). enable_indexscan = off rules out index-only scans too, and the
--          walk then became a bitmap scan and a sort of the whole rest of the window per chunk:
--          a backlog window of 1.4M rows timed out repeatedly (measured: 179 s to catch up
--          instead of 17 s).
-- Scope: SET LOCAL, this transaction only. Minimum: PostgreSQL 9. Privilege: none.
SET LOCAL enable_indexscan TO DEFAULT
