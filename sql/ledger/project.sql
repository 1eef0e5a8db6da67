-- The spend-log columns the ledger counts, as stored: every label dimension and every per-row
-- number is derived from them in Rust (src/ledger/project.rs, the single definition used by every
-- read: the start-up catch-up, the polls and the backfill).
-- Purpose: read the rows of a startTime window, created by transactions from a given one on.
--          PostgreSQL only filters and ships the columns: deriving a dozen JSON paths per row in
--          SQL cost 2.5 times a plain read of the same columns (measured on the benchmark
--          database), while the exporter parses the metadata on its own core as rows stream in.
-- Minimum: PostgreSQL 13 (xid8); LiteLLM schema of litellm-proxy-extras 0.1.1. Optional columns are
--          substituted by the exporter (each double-brace placeholder becomes a column or a NULL
--          literal).
-- Privilege: SELECT on "LiteLLM_SpendLogs" (and on "LiteLLM_SpendLogs_legacy" where it exists).
-- Placeholder table: the spend log; where LiteLLM's partitioning script left the old table aside, the
--   same statement is read from "LiteLLM_SpendLogs_legacy" too, joined by UNION ALL, with
--   placeholder not_copied (sql/ledger/not_copied.sql) keeping only its rows that are not also in the
--   new table (empty for the spend log itself).
-- Parameters: $1 lower startTime bound (text, inclusive), $2 upper bound (text, exclusive),
--             $3 only rows whose creating transaction id (xid8, as bigint) is >= this; 0 = all,
--             $4 xmax of the current snapshot (xid8 as bigint), to widen the 32-bit xmin,
--             $5... the LIKE patterns of the configured tag labels (custom_prometheus_tags).
-- Columns are read by name (src/ledger/project.rs): a label dimension's column is named like its
-- dimension (src/ledger/dimension.rs), and a dimension whose column not every schema has is a
-- placeholder of that name. Casts pin the wire types the decoder expects whatever the column's
-- declared type.
SELECT
  s.request_id::text AS request_id,
  s."startTime"::timestamp AS start_time,
  s."endTime"::timestamp AS end_time,
  s."completionStartTime"::timestamp AS completion_start_time,
  s.xmin AS xmin,
  s.api_key::text AS api_key,
  s.team_id::text AS team_id,
  s."user"::text AS user_id,
  {{end_user}} AS end_user,
  {{org_id}} AS org_id,
  s.model::text AS model,
  s.model_group::text AS model_group,
  s.model_id::text AS model_id,
  s.api_base::text AS api_base,
  s.custom_llm_provider::text AS provider,
  {{client_ip}} AS client_ip,
  {{status}} AS status,
  s.cache_hit::text AS cache_hit,
  s.spend::float8 AS spend,
  s.total_tokens::bigint AS total_tokens,
  s.prompt_tokens::bigint AS prompt_tokens,
  s.completion_tokens::bigint AS completion_tokens,
  s.metadata::jsonb AS metadata
  -- One boolean per configured tag label, named tag_0, tag_1, ...: whether any of the row's tags
  -- matches its pattern.
  {{tags}}
FROM {{table}} s
WHERE s."startTime" >= $1::text::timestamp
  AND s."startTime" < $2::text::timestamp
  AND ($3::bigint = 0
       OR ((((($4::bigint) >> 32) - CASE WHEN s.xmin::text::bigint > ($4::bigint & 4294967295) THEN 1 ELSE 0 END) << 32)
           | s.xmin::text::bigint) >= $3::bigint)
  {{not_copied}}
