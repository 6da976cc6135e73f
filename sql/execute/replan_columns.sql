-- replan_columns: every item of plan $plan_id in plan order (tie: its seq), as the re-plan after
-- the warm-up reads it without token ids (plan/sorted_requests.py sorts those in bounded
-- memory). own_output_tokens: the output length of $history_model_sha256's earlier result of
-- the same prompt and sampling among its newest $limit (macros/recent_answers.sql; NULL: none).
WITH history AS (
    SELECT prompt_sha256, sampling_json, n_output_tokens
    FROM recent_answers($dataset, $history_model_sha256, $tokenizer_sha256, $limit)
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
