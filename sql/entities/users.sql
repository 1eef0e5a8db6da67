-- Internal-user budgets. Privilege: SELECT on "LiteLLM_UserTable".
SELECT user_id,
       coalesce(user_email, '') AS user_email,
       coalesce(user_alias, '') AS user_alias,
       max_budget,
       spend,
       (extract(epoch FROM (budget_reset_at - (now() AT TIME ZONE 'UTC'))) / 3600)::float8 AS hours_to_reset
FROM "LiteLLM_UserTable"
