-- The pid of this session, by which another session of the exporter can watch and cancel it.
-- Privilege: none.
SELECT pg_backend_pid()
