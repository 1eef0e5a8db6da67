-- Whether the exporter reads a hot-standby replica, and how far its replay lags: read once per
-- refresh so that alerts can tell stale data (a replica behind its primary) from quiet traffic.
-- Purpose: in_recovery is true on a standby. received_minus_replayed_bytes is WAL the standby has
--          but has not applied yet; last_replay_unix is the commit time of the last replayed
--          transaction (it also ages on an idle primary, hence the byte gap next to it);
--          replay_paused is true after pg_wal_replay_pause(); receiver_up is true while a WAL
--          receiver process runs (its pid is visible to every role, its details are not).
--          On a primary every value but in_recovery is NULL.
-- Minimum: PostgreSQL 10. Privilege: none (every function and view here is granted to PUBLIC).
SELECT r.in_recovery,
       CASE WHEN r.in_recovery
            THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8
       END AS received_minus_replayed_bytes,
       CASE WHEN r.in_recovery
            THEN extract(epoch FROM pg_last_xact_replay_timestamp())::float8
       END AS last_replay_unix,
       CASE WHEN r.in_recovery THEN pg_is_wal_replay_paused() END AS replay_paused,
       CASE WHEN r.in_recovery
            THEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL)
       END AS receiver_up,
       extract(epoch FROM now())::float8 AS now_unix
FROM (SELECT pg_is_in_recovery() AS in_recovery) AS r
