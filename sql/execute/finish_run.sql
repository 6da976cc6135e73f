-- finish_run: record the end of an execution: status, run totals, and times summed over executions.
UPDATE runs
SET finished_at = now(),
    status = $status,
    n_requests = $n_requests,
    n_errors = $n_errors,
    input_tokens = $input_tokens,
    output_tokens = $output_tokens,
    cached_tokens = $cached_tokens,
    engine_start_s = coalesce(engine_start_s, 0) + $engine_start_s,
    wall_s = coalesce(wall_s, 0) + $wall_s,
    engine_busy_s = coalesce(engine_busy_s, 0) + $engine_busy_s,
    n_engine_restarts = coalesce(n_engine_restarts, 0) + $n_engine_restarts,
    prefix_cache_hit_rate = $prefix_cache_hit_rate,
    engine_prefix_cache_hit_rate = $engine_prefix_cache_hit_rate
WHERE run_id = $run_id;
