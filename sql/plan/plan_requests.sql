-- plan_requests: the tokenized requests of a snapshot, in input order, as a planner sees them.
-- With $done_model_sha256 set (incremental), a prompt is left out when that model already has
-- a result for the same prompt_sha256 and sampling_json in any run: a completion, or an error
-- row of a prompt that can never run (longer than the context, $max_model_len tokens).
WITH tokens AS (
    SELECT request_id, token_ids, n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),
answered AS (
    SELECT prompt_sha256, sampling_json, bool_or(error IS NULL) AS completed
    FROM results
    WHERE model_sha256 = $done_model_sha256
    GROUP BY prompt_sha256, sampling_json
),
final AS (
    SELECT p.request_id, t.token_ids, p.max_tokens, p.prompt_sha256, p.sampling_json
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    LEFT JOIN answered AS a
        ON a.prompt_sha256 = p.prompt_sha256 AND a.sampling_json = p.sampling_json
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
        AND NOT (
            a.prompt_sha256 IS NOT NULL
            AND (a.completed OR t.n_prompt_tokens >= $max_model_len)
        )
    ORDER BY p.line_no
)
SELECT * FROM final;
