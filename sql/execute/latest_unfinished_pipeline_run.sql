-- latest_unfinished_pipeline_run: the most recently started run that did not complete, of a plan of
-- this dataset snapshot by this planner, run with this model (what a plain re-run continues).
WITH final AS (
    SELECT r.run_id, r.plan_id, r.status, r.results_uri
    FROM runs AS r
    JOIN plans AS p USING (plan_id)
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot AND p.planner = $planner
        AND r.model_sha256 = $model_sha256 AND r.status <> 'completed'
    ORDER BY r.started_at DESC, r.run_id DESC
    LIMIT 1
)
SELECT * FROM final;
