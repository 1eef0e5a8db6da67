-- litellm_total_users and litellm_active_users (users not deactivated through SCIM).
-- Privilege: SELECT on "LiteLLM_UserTable".
SELECT count(*)::bigint AS total,
       count(*) FILTER (WHERE NOT coalesce(metadata -> 'scim_active' = 'false'::jsonb, false))::bigint AS active
FROM "LiteLLM_UserTable"
