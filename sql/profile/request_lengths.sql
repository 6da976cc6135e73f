-- request_lengths: line_no, prompt tokens and max_tokens of each tokenized request of ($dataset,
-- $snapshot, $tokenizer_sha256): the rows of plan/plan_requests.sql (nothing answered yet) without
-- their token ids, for the request classes when no request has an earlier result. Unsorted (the
-- caller orders by line_no): DuckDB's sort of this join needed more than the profile's memory cap.
WITH tokens AS (
    SELECT request_id, n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),

final AS (
    SELECT p.line_no, t.n_prompt_tokens, p.max_tokens
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
)

SELECT * FROM final
