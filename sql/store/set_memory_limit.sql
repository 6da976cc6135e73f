-- set_memory_limit: cap DuckDB's memory at $limit (e.g. '1024MiB'); beyond it data spills to the temporary folder.
SET memory_limit = $limit;
