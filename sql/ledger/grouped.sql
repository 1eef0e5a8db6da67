-- The start-up rebuild of rows that can no longer change: the projection of ledger/project.sql
-- summed per label class, one bounded startTime chunk at a time.
-- Purpose: cold start reads each old row once, with the aggregation done where the rows are.
-- Minimum: as ledger/project.sql. Privilege: SELECT on "LiteLLM_SpendLogs".
-- Parameters: as ledger/project.sql. The buckets placeholder is replaced by one cumulative
-- count(*) FILTER (WHERE <histogram> <= <bound in µs>) per histogram bucket, generated from the
-- configured bucket lists (numbers only).
SELECT
  api_key, key_alias, team_id, team_alias, user_id, user_email, end_user, org_id, model,
  model_group, original_model_group, model_id, api_base, provider, client_ip, user_agent,
  service_tier, failed, error_code, error_class, error_provider, cache_hit, stream,
  count(*)::bigint AS rows,
  max(start_ms) AS max_start_ms,
  sum(spend_pico)::text, sum(total_tokens)::bigint, sum(prompt_tokens)::bigint,
  sum(completion_tokens)::bigint, sum(cached_input_tokens)::bigint,
  sum(cache_creation_input_tokens)::bigint, sum(input_audio_tokens)::bigint,
  sum(output_reasoning_tokens)::bigint, sum(output_audio_tokens)::bigint,
  sum(images_generated)::bigint, sum(video_us)::bigint, sum(provider_cache_read_tokens)::bigint,
  sum(provider_cache_creation_tokens)::bigint, sum(bad_numbers)::bigint,
  count(total_latency_us)::bigint, coalesce(sum(total_latency_us), 0)::bigint,
  count(llm_api_latency_us)::bigint, coalesce(sum(llm_api_latency_us), 0)::bigint,
  count(ttft_us)::bigint, coalesce(sum(ttft_us), 0)::bigint,
  count(overhead_us)::bigint, coalesce(sum(overhead_us), 0)::bigint,
  count(per_token_us)::bigint, coalesce(sum(per_token_us), 0)::bigint
  {{buckets}}
  {{extra_dims}}
FROM ({{projection}} OFFSET 0) p
GROUP BY api_key, key_alias, team_id, team_alias, user_id, user_email, end_user, org_id, model,
  model_group, original_model_group, model_id, api_base, provider, client_ip, user_agent,
  service_tier, failed, error_code, error_class, error_provider, cache_hit, stream
  {{extra_dims}}
