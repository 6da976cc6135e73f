-- resume_run: mark an existing run as running again (one more execution).
UPDATE runs
SET status = 'running',
    finished_at = NULL,
    flow_run_id = coalesce($flow_run_id, flow_run_id),
    deployment_name = coalesce($deployment_name, deployment_name),
    n_attempts = coalesce(n_attempts, 1) + 1
WHERE run_id = $run_id;
