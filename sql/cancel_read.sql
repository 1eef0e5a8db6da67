-- Cancels the running statement of one of the exporter's own sessions, whose transaction then
-- ends and releases its locks (see lock_waiters.sql for why).
-- Privilege: none beyond being the same role as that session (pg_cancel_backend's rule).
-- Parameter: $1 the session's pid (int4).
SELECT pg_cancel_backend($1)
