-- memory_limit: DuckDB's current memory limit (to restore it after a capped block).
SELECT current_setting('memory_limit') AS memory_limit;
