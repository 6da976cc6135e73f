-- finish_run: record a run's end, its status and totals.
UPDATE runs
SET finished_at = now(),
    status = $status,
    n_requests = $n_requests,
    n_errors = $n_errors,
    input_tokens = $input_tokens,
    output_tokens = $output_tokens,
    cached_tokens = $cached_tokens,
    engine_start_s = $engine_start_s,
    wall_s = $wall_s
WHERE run_id = $run_id;
