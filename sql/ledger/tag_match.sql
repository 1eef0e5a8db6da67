-- One configured tag label (custom_prometheus_tags), appended to project.sql's select list once
-- per tag: whether any of the row's request_tags (a JSON array; anything else counts as no tags)
-- matches the LIKE pattern passed as parameter $n (n filled in: 5, 6, ... in configuration order),
-- named tag_i (i filled in: 0, 1, ...), the name src/ledger/project.rs reads it by.
EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.request_tags) = 'array' THEN s.request_tags ELSE '[]'::jsonb END) tag(v) WHERE tag.v LIKE ${{n}}::text) AS tag_{{i}}
