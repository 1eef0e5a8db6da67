-- The test oracle for src/ledger/project.rs: the per-row projection as SQL, written with
-- PostgreSQL's own jsonb operators, numeric rounding and timestamp arithmetic. This was the
-- exporter's definition until the JSON work moved to Rust (PostgreSQL spent 4x a plain read on
-- it); tests/it/projection.rs runs both on the same rows and requires identical facts per row.
-- Placeholders (double braces): user_email, end_user, client_ip, status, organization_id, stream,
-- extras; parameters: $1/$2 startTime bounds, $3 min xid8 (0 = all), $4 xmax, $5... custom labels.
SELECT
  s.request_id,
  CASE WHEN isfinite(s."startTime")
       THEN (extract(epoch FROM s."startTime") * 1000)::bigint
       WHEN s."startTime" > 'epoch'::timestamp THEN 9223372036854775807
       ELSE -9223372036854775808 END                                        AS start_ms,
  s.xmin::text::bigint                                                      AS xmin32,
  left(coalesce(s.api_key, ''), 1024)                                       AS api_key,
  left(coalesce(m.md->>'user_api_key_alias', ''), 1024)                     AS key_alias,
  left(coalesce(s.team_id, ''), 1024)                                       AS team_id,
  left(coalesce(m.md->>'user_api_key_team_alias', ''), 1024)                AS team_alias,
  left(coalesce(s."user", ''), 1024)                                        AS user_id,
  {{user_email}}                                                            AS user_email,
  {{end_user}}                                                              AS end_user,
  left(coalesce(nullif({{organization_id}}, ''), m.md->>'user_api_key_org_id', ''), 1024) AS org_id,
  left(coalesce(s.model, ''), 1024)                                         AS model,
  left(coalesce(s.model_group, ''), 1024)                                   AS model_group,
  left(coalesce(m.md->>'original_model_group', ''), 1024)                   AS original_model_group,
  left(coalesce(s.model_id, ''), 1024)                                      AS model_id,
  left(coalesce(s.api_base, ''), 1024)                                      AS api_base,
  left(coalesce(s.custom_llm_provider, ''), 1024)                           AS provider,
  {{client_ip}}                                                             AS client_ip,
  left(coalesce(m.md->>'user_agent', ''), 1024)                             AS user_agent,
  left(coalesce(j.u->>'service_tier', ''), 1024)                            AS service_tier,
  (coalesce({{status}}, m.md->>'status', '') = 'failure')                   AS failed,
  left(coalesce(j.e->>'error_code', ''), 1024)                              AS error_code,
  left(coalesce(j.e->>'error_class', ''), 1024)                             AS error_class,
  left(coalesce(j.e->>'llm_provider', ''), 1024)                            AS error_provider,
  CASE s.cache_hit WHEN 'True' THEN 'True' WHEN 'False' THEN 'False' ELSE '' END AS cache_hit,
  n.spend_pico,
  greatest(s.total_tokens, 0)::bigint                                       AS total_tokens,
  greatest(s.prompt_tokens, 0)::bigint                                      AS prompt_tokens,
  greatest(s.completion_tokens, 0)::bigint                                  AS completion_tokens,
  coalesce(t.ptd_cached, t.a_cache_read, 0)                                 AS cached_input_tokens,
  coalesce(t.ptd_cache_write, t.a_cache_creation, 0)                        AS cache_creation_input_tokens,
  coalesce(t.ptd_audio, 0)                                                  AS input_audio_tokens,
  coalesce(t.ctd_reasoning, 0)                                              AS output_reasoning_tokens,
  coalesce(t.ctd_audio, 0)                                                  AS output_audio_tokens,
  coalesce(t.images, 0)                                                     AS images_generated,
  coalesce(t.video_us, 0)                                                   AS video_us,
  coalesce(t.u_cache_read, t.ptd_cached, 0)                                 AS provider_cache_read_tokens,
  coalesce(t.u_cache_creation, t.ptd_cache_write, 0)                        AS provider_cache_creation_tokens,
  (n.spend_bad + CASE WHEN s.total_tokens < 0 OR s.prompt_tokens < 0 OR s.completion_tokens < 0
                      THEN 1 ELSE 0 END + d.duration_bad)::bigint           AS bad_numbers,
  d.total_us                                                                AS total_latency_us,
  greatest(d.total_us - coalesce(o.overhead_us, 0), 0)                      AS llm_api_latency_us,
  d.ttft_us                                                                 AS ttft_us,
  o.overhead_us                                                             AS overhead_us,
  CASE WHEN s.completion_tokens > 0
       THEN round(coalesce(d.ttft_us, d.total_us)::numeric / s.completion_tokens)::bigint
       END                                                                  AS per_token_us,
  -- Whether the response was streamed, for prometheus_emit_stream_label ('' when off).
  {{stream}}                                                                AS stream
  -- Configured custom labels (custom_prometheus_metadata_labels, custom_prometheus_tags), each a
  -- text column x0, x1, ... whose path or pattern is a parameter from $5 on.
  {{extras}}
FROM "LiteLLM_SpendLogs" s
-- Each LATERAL ends in OFFSET 0 so that the planner computes it once per row instead of inlining
-- it into every expression that uses it (which re-reads, and re-decompresses, the metadata JSON
-- for every use: measured 15x slower when this was also aggregated in SQL).
-- Metadata may be NULL or, on hand-edited rows, not an object at all: read it as {} then.
CROSS JOIN LATERAL (
  SELECT CASE WHEN jsonb_typeof(s.metadata) = 'object' THEN s.metadata ELSE '{}'::jsonb END AS md
  OFFSET 0
) m
CROSS JOIN LATERAL (
  SELECT CASE WHEN jsonb_typeof(m.md->'usage_object') = 'object'
              THEN m.md->'usage_object' ELSE '{}'::jsonb END AS u,
         CASE WHEN jsonb_typeof(m.md->'error_information') = 'object'
              THEN m.md->'error_information' ELSE '{}'::jsonb END AS e,
         CASE WHEN jsonb_typeof(m.md->'additional_usage_values') = 'object'
              THEN m.md->'additional_usage_values' ELSE '{}'::jsonb END AS a
  OFFSET 0
) j
-- Token details: only JSON numbers count; anything else (strings, objects, null) is absent.
CROSS JOIN LATERAL (
  SELECT
    CASE WHEN jsonb_typeof(x.v[1]) = 'number' THEN least(greatest(round((x.v[1])::numeric), 0), 1e15)::bigint END AS ptd_cached,
    CASE WHEN jsonb_typeof(x.v[2]) = 'number' THEN least(greatest(round((x.v[2])::numeric), 0), 1e15)::bigint END AS ptd_cache_write,
    CASE WHEN jsonb_typeof(x.v[3]) = 'number' THEN least(greatest(round((x.v[3])::numeric), 0), 1e15)::bigint END AS ptd_audio,
    CASE WHEN jsonb_typeof(x.v[4]) = 'number' THEN least(greatest(round((x.v[4])::numeric), 0), 1e15)::bigint END AS ctd_reasoning,
    CASE WHEN jsonb_typeof(x.v[5]) = 'number' THEN least(greatest(round((x.v[5])::numeric), 0), 1e15)::bigint END AS ctd_audio,
    CASE WHEN jsonb_typeof(x.v[6]) = 'number' THEN least(greatest(round((x.v[6])::numeric), 0), 1e15)::bigint END AS images,
    CASE WHEN jsonb_typeof(x.v[7]) = 'number' THEN least(greatest(round((x.v[7])::numeric * 1000000), 0), 1e15)::bigint END AS video_us,
    CASE WHEN jsonb_typeof(x.v[8]) = 'number' THEN least(greatest(round((x.v[8])::numeric), 0), 1e15)::bigint END AS u_cache_read,
    CASE WHEN jsonb_typeof(x.v[9]) = 'number' THEN least(greatest(round((x.v[9])::numeric), 0), 1e15)::bigint END AS u_cache_creation,
    CASE WHEN jsonb_typeof(x.v[10]) = 'number' THEN least(greatest(round((x.v[10])::numeric), 0), 1e15)::bigint END AS a_cache_read,
    CASE WHEN jsonb_typeof(x.v[11]) = 'number' THEN least(greatest(round((x.v[11])::numeric), 0), 1e15)::bigint END AS a_cache_creation
  FROM (SELECT ARRAY[
    j.u #> '{prompt_tokens_details,cached_tokens}',
    coalesce(j.u #> '{prompt_tokens_details,cache_write_tokens}', j.u #> '{prompt_tokens_details,cache_creation_tokens}'),
    j.u #> '{prompt_tokens_details,audio_tokens}',
    j.u #> '{completion_tokens_details,reasoning_tokens}',
    j.u #> '{completion_tokens_details,audio_tokens}',
    j.u -> 'output_image_count',
    j.u -> 'duration_seconds',
    j.u -> 'cache_read_input_tokens',
    j.u -> 'cache_creation_input_tokens',
    j.a -> 'cache_read_input_tokens',
    j.a -> 'cache_creation_input_tokens'
  ] AS v OFFSET 0) x
  OFFSET 0
) t
-- Spend: NaN compares greater than every number in PostgreSQL, hence the explicit upper bound
-- (one request costing a million dollars or more is taken as corrupt).
CROSS JOIN LATERAL (
  SELECT CASE WHEN s.spend >= 0 AND s.spend < 1e6 THEN round(s.spend * 1e12)::bigint ELSE 0 END AS spend_pico,
         CASE WHEN s.spend >= 0 AND s.spend < 1e6 THEN 0 ELSE 1 END AS spend_bad
  OFFSET 0
) n
-- Durations come from the timestamps (millisecond precision), which every schema has.
CROSS JOIN LATERAL (
  SELECT
    -- Timestamp subtraction wraps around silently for spans beyond 292,000 years (bad input),
    -- so spans are first compared as epochs: 1e9 s and beyond is the 1e15 µs cap.
    CASE WHEN NOT (isfinite(s."startTime") AND isfinite(s."endTime")) THEN 0
         WHEN extract(epoch FROM s."endTime") - extract(epoch FROM s."startTime") >= 1e9 THEN 1000000000000000
         WHEN extract(epoch FROM s."endTime") - extract(epoch FROM s."startTime") <= 0 THEN 0
         ELSE least(round(extract(epoch FROM (s."endTime" - s."startTime")) * 1000000), 1e15)::bigint
         END AS total_us,
    CASE WHEN isfinite(s."startTime") AND isfinite(s."endTime") AND s."endTime" >= s."startTime"
         THEN 0 ELSE 1 END AS duration_bad,
    -- A stream's first token comes before its end; LiteLLM writes completionStartTime = endTime
    -- for everything else.
    CASE WHEN isfinite(s."startTime") AND isfinite(s."completionStartTime") AND isfinite(s."endTime")
              AND s."completionStartTime" < s."endTime" AND s."completionStartTime" >= s."startTime"
         THEN CASE WHEN extract(epoch FROM s."completionStartTime") - extract(epoch FROM s."startTime") >= 1e9
                   THEN 1000000000000000
                   ELSE least(round(extract(epoch FROM (s."completionStartTime" - s."startTime")) * 1000000), 1e15)::bigint
                   END
         END AS ttft_us
  OFFSET 0
) d
CROSS JOIN LATERAL (
  SELECT CASE WHEN jsonb_typeof(m.md->'litellm_overhead_time_ms') = 'number'
              THEN least(greatest(round((m.md->>'litellm_overhead_time_ms')::numeric * 1000), 0), 1e15)::bigint
              END AS overhead_us
  OFFSET 0
) o
WHERE s."startTime" >= $1::text::timestamp
  AND s."startTime" < $2::text::timestamp
  AND ($3::bigint = 0
       OR ((((($4::bigint) >> 32) - CASE WHEN s.xmin::text::bigint > ($4::bigint & 4294967295) THEN 1 ELSE 0 END) << 32)
           | s.xmin::text::bigint) >= $3::bigint)
