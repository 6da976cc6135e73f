-- create_view: `results` unions the Parquet parts of every run ($glob is the store's results glob,
-- or the list of its readable parts when a read-only connection leaves unreadable ones out).
CREATE OR REPLACE VIEW results AS
SELECT *
FROM read_parquet($glob, union_by_name = true, hive_partitioning = false, filename = false);
