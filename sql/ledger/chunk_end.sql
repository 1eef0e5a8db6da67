-- Where a chunk of at most N rows ends: the startTime of the (N+1)-th row from a lower bound on
-- (before an upper bound), in startTime order; NULL when no more than N rows are left.
-- Purpose: the start-up catch-up reads history in startTime chunks sized by how long the chunks
--          before took, and history's density can jump a hundredfold (a backlog: a million rows
--          in one hour after weeks of a few thousand a day). A chunk cut here holds at most N
--          rows whatever the density, and stays inside statement_timeout (without it, one such
--          hour cost the benchmark's cold start seven timeouts: 193 s instead of 25).
-- Uses the "startTime" index only (an index-only scan where pages are all-visible), at most
--          N+1 entries of it: measured 40 ms for 100k entries, about 3 % of reading those rows.
-- Privilege: SELECT on "LiteLLM_SpendLogs" (and on "LiteLLM_SpendLogs_legacy" where it exists).
-- Placeholder start_times: the spend log, or with LiteLLM_SpendLogs_legacy (sql/ledger/with_legacy.sql).
-- Parameters: $1 lower startTime bound (text, inclusive), $2 upper bound (text, exclusive),
--             $3 N (bigint). Infinite startTimes are left out: their epoch is no bigint, and the
--             chunk that reaches them reads them anyway.
SELECT (extract(epoch FROM s."startTime") * 1000)::bigint
FROM {{start_times}} s
WHERE s."startTime" >= $1::text::timestamp
  AND s."startTime" < $2::text::timestamp
  AND s."startTime" > '-infinity'::timestamp
  AND s."startTime" < 'infinity'::timestamp
ORDER BY s."startTime"
OFFSET $3::bigint
LIMIT 1
