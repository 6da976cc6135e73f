-- request_lengths: prompt tokens and max_tokens of each tokenized request of ($dataset, $snapshot,
-- $tokenizer_sha256), in input order: the rows of plan/plan_requests.sql (nothing answered yet)
-- without their token ids, for the request classes when no request has an earlier result.
WITH tokens AS (
    SELECT request_id, n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),

final AS (
    SELECT t.n_prompt_tokens, p.max_tokens
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
    ORDER BY p.line_no
)

SELECT * FROM final
