-- plan_requests: the tokenized requests of a snapshot, in input order, as a planner sees them.
WITH tokens AS (
    SELECT request_id, token_ids
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),
final AS (
    SELECT p.request_id, t.token_ids, p.max_tokens
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
    ORDER BY p.line_no
)
SELECT * FROM final;
