-- create_files_view: `result_files`, the Parquet part that holds each result row ($glob as in create_view).
CREATE OR REPLACE VIEW result_files AS
SELECT dataset, run_id, request_id, filename AS file
FROM read_parquet($glob, union_by_name = true, hive_partitioning = false, filename = true);
