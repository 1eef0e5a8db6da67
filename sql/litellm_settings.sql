-- LiteLLM's settings stored in its database: the "general_settings" and "litellm_settings" rows
-- of "LiteLLM_Config", through the view sql/setup/readonly_role.sql creates (the role cannot read
-- the table, whose other rows hold secrets).
-- Purpose: merged over the config file's settings with LiteLLM's precedence (src/config/db_settings.rs).
-- Minimum: PostgreSQL 9.4 (security_barrier views, jsonb). Privilege: SELECT on the view; without
--          it (or without the view) the exporter uses the config file alone.
SELECT param_name, param_value
FROM litellm_exporter_settings
WHERE param_name IN ('general_settings', 'litellm_settings')
