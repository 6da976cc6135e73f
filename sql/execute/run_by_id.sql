-- run_by_id: one run's row.
WITH final AS (
    SELECT run_id, plan_id, dataset, snapshot, status, model, model_sha256
    FROM runs
    WHERE run_id = $run_id
)
SELECT * FROM final;
