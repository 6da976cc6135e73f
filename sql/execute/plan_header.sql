-- plan_header: one plan's header row.
WITH final AS (
    SELECT plan_id, dataset, snapshot, planner, tokenizer_sha256, n_requests, n_batches,
        params_json
    FROM plans
    WHERE plan_id = $plan_id
)
SELECT * FROM final;
