-- set_memory_limit: cap DuckDB's memory at $limit (e.g. '1GB'); beyond it data spills to the temporary folder.
SET memory_limit = $limit;
