-- reset_memory_limit: DuckDB's memory limit back to its default (80% of RAM).
RESET memory_limit;
