-- dataset_runs: whether the dataset has prompts, and whether run $run_id wrote results for it.
SELECT
    (SELECT count(*) FROM prompts WHERE dataset = $dataset) AS n_prompts,
    (SELECT count(*) FROM results WHERE dataset = $dataset AND run_id = $run_id) AS n_run_rows;
