-- parse_tree: DuckDB's own parse tree of one statement as JSON ($statement: its text), for the
-- read-only check of `blend query`. Errors come back as JSON too ("error": true), e.g. for any
-- statement that is not a SELECT.
SELECT json_serialize_sql($statement);
