-- resume_run: mark an existing run as running again.
UPDATE runs
SET status = 'running', finished_at = NULL, flow_run_id = coalesce($flow_run_id, flow_run_id)
WHERE run_id = $run_id;
