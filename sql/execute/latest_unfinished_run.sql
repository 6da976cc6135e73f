-- latest_unfinished_run: the most recently started run of a plan that has not completed.
WITH final AS (
    SELECT run_id
    FROM runs
    WHERE plan_id = $plan_id AND status <> 'completed'
    ORDER BY started_at DESC, run_id DESC
    LIMIT 1
)
SELECT * FROM final;
