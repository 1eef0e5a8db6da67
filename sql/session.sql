-- The settings of every pooled session, run once when the pool opens it (src/db.rs).
-- Purpose: every statement ends by the configured timeout, also while it waits for a lock; a
--          transaction left idle is cut after twice that; the session cannot write; no JIT (the
--          catch-up's chunk statements cross its cost threshold, and compiling costs more than it
--          saves on a filtered scan that ships columns); the name pg_stat_activity shows.
-- Placeholders: timeout_ms and idle_ms, milliseconds from the validated configuration;
--               application_name, the exporter's name (db::APPLICATION_NAME).
-- Minimum: PostgreSQL 11 (jit). Privilege: none.
SET statement_timeout = {{timeout_ms}};
SET lock_timeout = {{timeout_ms}};
SET idle_in_transaction_session_timeout = {{idle_ms}};
SET default_transaction_read_only = on;
SET jit = off;
SET application_name = '{{application_name}}';
