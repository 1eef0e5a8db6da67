-- Team budgets, rate limits and member counts, re-read on every refresh (a small table).
-- Privilege: SELECT on "LiteLLM_TeamTable".
-- hours_to_reset is measured against the database's UTC clock, like LiteLLM's stored times.
SELECT team_id,
       coalesce(team_alias, '') AS team_alias,
       max_budget,
       spend,
       (extract(epoch FROM (budget_reset_at - (now() AT TIME ZONE 'UTC'))) / 3600)::float8 AS hours_to_reset,
       rpm_limit,
       tpm_limit,
       CASE WHEN jsonb_typeof(members_with_roles) = 'array'
            THEN jsonb_array_length(members_with_roles) ELSE 0 END::bigint AS members
FROM "LiteLLM_TeamTable"
