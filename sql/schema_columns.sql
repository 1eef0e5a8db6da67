-- Which LiteLLM tables and columns exist, so that optional ones can be used only where present.
-- Privilege: none beyond seeing the tables (information_schema shows what the role may access).
-- Parameter: $1 the table names to look for (text[]).
SELECT table_name::text, column_name::text
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
