-- mark_interrupted: a running run whose process is gone (its run lock is free) is interrupted.
UPDATE runs
SET status = 'interrupted', interrupted_at = now()
WHERE run_id = $run_id AND status = 'running';
