-- Customer (end-user) budgets; customers without a budget row are skipped, as in LiteLLM.
-- Privilege: SELECT on "LiteLLM_EndUserTable" and "LiteLLM_BudgetTable".
SELECT e.user_id,
       b.max_budget,
       e.spend,
       (extract(epoch FROM (b.budget_reset_at - (now() AT TIME ZONE 'UTC'))) / 3600)::float8 AS hours_to_reset
FROM "LiteLLM_EndUserTable" e
JOIN "LiteLLM_BudgetTable" b ON b.budget_id = e.budget_id
