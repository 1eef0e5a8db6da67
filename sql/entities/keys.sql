-- Virtual-key budgets and rate limits. UI login sessions (team 'litellm-dashboard') are left out,
-- as LiteLLM's own budget job does.
-- Privilege: SELECT on "LiteLLM_VerificationToken" (token is the SHA-256 hash, never a raw key).
SELECT token,
       coalesce(key_alias, '') AS key_alias,
       max_budget,
       spend,
       (extract(epoch FROM (budget_reset_at - (now() AT TIME ZONE 'UTC'))) / 3600)::float8 AS hours_to_reset,
       rpm_limit,
       tpm_limit
FROM "LiteLLM_VerificationToken"
WHERE team_id IS DISTINCT FROM 'litellm-dashboard'
