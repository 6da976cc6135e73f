-- running_runs: runs recorded as running (alive or dead: their run lock tells), with their folder.
WITH final AS (
    SELECT run_id, plan_id, results_uri
    FROM runs
    WHERE status = 'running'
    ORDER BY started_at, run_id
)
SELECT * FROM final;
