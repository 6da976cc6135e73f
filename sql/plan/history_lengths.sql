-- history_lengths: output lengths of earlier completions of this dataset (any snapshot) by the
-- same model (model_sha256), with their prompts' token ids (same tokenizer) and sampling, the
-- most recent $limit first. Estimates of new prompts borrow them (planners/estimates.py).
WITH done AS (
    SELECT dataset, snapshot, request_id, prompt_sha256, sampling_json, n_output_tokens,
        finished_at
    FROM results
    WHERE dataset = $dataset AND model_sha256 = $model_sha256 AND error IS NULL
    QUALIFY row_number() OVER (
        PARTITION BY prompt_sha256, sampling_json ORDER BY finished_at DESC
    ) = 1
),
final AS (
    SELECT d.prompt_sha256, d.sampling_json, d.n_output_tokens, t.token_ids
    FROM done AS d
    JOIN prompt_tokens AS t
        ON t.dataset = d.dataset AND t.snapshot = d.snapshot AND t.request_id = d.request_id
        AND t.tokenizer_sha256 = $tokenizer_sha256
    ORDER BY d.finished_at DESC
    LIMIT $limit
)
SELECT * FROM final;
