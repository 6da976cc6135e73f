-- replan_columns: every item of plan $plan_id in plan order (tie: its seq), as the re-plan after
-- the warm-up reads it without token ids (plan/sorted_requests.py sorts those in bounded
-- memory). own_output_tokens: the output length of $history_model_sha256's earlier result of
-- the same prompt and sampling among the newest $limit of plan/history_lengths.sql (NULL: none).
WITH done AS (
    SELECT dataset, snapshot, request_id, prompt_sha256, sampling_json, n_output_tokens,
        finished_at
    FROM results
    WHERE dataset = $dataset AND model_sha256 = $history_model_sha256 AND error IS NULL
    QUALIFY row_number() OVER (
        PARTITION BY prompt_sha256, sampling_json ORDER BY finished_at DESC
    ) = 1
),
history AS (
    SELECT d.prompt_sha256, d.sampling_json, d.n_output_tokens
    FROM done AS d
    JOIN prompt_tokens AS t
        ON t.dataset = d.dataset AND t.snapshot = d.snapshot AND t.request_id = d.request_id
        AND t.tokenizer_sha256 = $tokenizer_sha256
    ORDER BY d.finished_at DESC
    LIMIT $limit
),
final AS (
    SELECT i.request_id, i.seq AS tie, t.n_prompt_tokens, p.max_tokens,
        h.n_output_tokens AS own_output_tokens
    FROM plan_items AS i
    JOIN prompts AS p
        ON p.dataset = $dataset AND p.snapshot = $snapshot AND p.request_id = i.request_id
    JOIN prompt_tokens AS t
        ON t.dataset = $dataset AND t.snapshot = $snapshot AND t.request_id = i.request_id
        AND t.tokenizer_sha256 = $tokenizer_sha256
    LEFT JOIN history AS h
        ON h.prompt_sha256 = p.prompt_sha256 AND h.sampling_json = p.sampling_json
    WHERE i.plan_id = $plan_id
    ORDER BY i.seq
)
SELECT * FROM final;
