-- insert_plan: record one plan's header row.
INSERT INTO plans (
    plan_id, dataset, snapshot, planner, model_spec, hardware, tokenizer_sha256, created_at,
    params_json, n_requests, n_batches, sharing_ratio, plan_seconds,
    predicted_makespan_s, optimal_makespan_s, admission, max_num_batched_tokens, max_num_seqs,
    settings_source, n_warmup, replan_after_warmup, search_settings, t_seq_makespan_s
)
VALUES (
    $plan_id, $dataset, $snapshot, $planner, $model_spec, $hardware, $tokenizer_sha256, now(),
    $params_json, $n_requests, $n_batches, $sharing_ratio, $plan_seconds,
    $predicted_makespan_s, $optimal_makespan_s, $admission, $max_num_batched_tokens,
    $max_num_seqs, $settings_source, $n_warmup, $replan_after_warmup, $search_settings,
    $t_seq_makespan_s
);
