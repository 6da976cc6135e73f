-- create_empty_files_view: `result_files` before any run has written a part.
CREATE OR REPLACE VIEW result_files AS
SELECT
    CAST(NULL AS VARCHAR) AS dataset,
    CAST(NULL AS VARCHAR) AS run_id,
    CAST(NULL AS VARCHAR) AS request_id,
    CAST(NULL AS VARCHAR) AS file
WHERE false;
