-- insert_plan: record one plan's header row.
INSERT INTO plans (
    plan_id, dataset, snapshot, planner, model_spec, hardware, tokenizer_sha256, created_at,
    params_json, n_requests, n_batches, sharing_ratio, plan_seconds,
    predicted_makespan_s, optimal_makespan_s
)
VALUES (
    $plan_id, $dataset, $snapshot, $planner, $model_spec, $hardware, $tokenizer_sha256, now(),
    $params_json, $n_requests, $n_batches, $sharing_ratio, $plan_seconds,
    $predicted_makespan_s, $optimal_makespan_s
);
