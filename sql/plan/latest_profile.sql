-- latest_profile: the most recent profile of a dataset (optionally of one snapshot).
WITH final AS (
    SELECT dataset, snapshot, tokenizer_sha256, model, max_model_len, n_prompts
    FROM profiles
    WHERE dataset = $dataset AND ($snapshot IS NULL OR snapshot = $snapshot)
    ORDER BY snapshot DESC, profiled_at DESC
    LIMIT 1
)
SELECT * FROM final;
