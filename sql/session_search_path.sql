-- After session.sql, when the database URL names a schema (Prisma's ?schema=): LiteLLM's tables
-- are looked up there. SET takes no $n parameters, so the name is filled in as a quoted
-- identifier: src/db.rs doubles every double quote in it, and nothing else can end the quotes.
SET search_path = "{{schema}}";
