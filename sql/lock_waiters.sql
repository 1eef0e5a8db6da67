-- Whether any session waits for a lock the given session holds (or has asked for ahead of it).
-- Purpose: LiteLLM's spend-log cleanup creates and drops partitions (CREATE TABLE ... PARTITION
--          OF, DROP TABLE), which need an ACCESS EXCLUSIVE lock on the spend log; while such a
--          statement waits for the ACCESS SHARE lock an exporter read holds, every LiteLLM insert
--          queues behind it. The exporter asks this while a read of its runs, and gives way.
-- Cheap when nobody waits: pg_blocking_pids runs only for the ungranted locks.
-- Minimum: PostgreSQL 9.6 (pg_blocking_pids). Privilege: none (pg_locks is readable by all).
-- Parameter: $1 the reading session's pid (int4).
SELECT EXISTS (
    SELECT 1 FROM pg_locks w
    WHERE NOT w.granted
      AND w.pid <> $1
      AND $1 = ANY (pg_blocking_pids(w.pid)))
