-- plan_header: one plan's header row.
WITH final AS (
    SELECT plan_id, dataset, snapshot, planner, model_spec, hardware, tokenizer_sha256,
        n_requests, n_batches, params_json, admission, max_num_batched_tokens, max_num_seqs,
        settings_source, n_warmup, replan_after_warmup, search_settings
    FROM plans
    WHERE plan_id = $plan_id
)
SELECT * FROM final;
