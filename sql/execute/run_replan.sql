-- run_replan: a run's re-plan record (NULL replan_json: not re-planned yet).
WITH final AS (
    SELECT run_id, replanned_at, replan_json
    FROM runs
    WHERE run_id = $run_id
)
SELECT * FROM final;
