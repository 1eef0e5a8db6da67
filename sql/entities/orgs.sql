-- Organization budgets: the limit lives in the organization's "LiteLLM_BudgetTable" row.
-- Privilege: SELECT on "LiteLLM_OrganizationTable" and "LiteLLM_BudgetTable".
SELECT o.organization_id,
       coalesce(o.organization_alias, '') AS organization_alias,
       b.max_budget,
       o.spend,
       (extract(epoch FROM (b.budget_reset_at - (now() AT TIME ZONE 'UTC'))) / 3600)::float8 AS hours_to_reset
FROM "LiteLLM_OrganizationTable" o
LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id
