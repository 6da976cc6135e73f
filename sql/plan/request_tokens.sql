-- request_tokens: token ids, output limits and dedup keys of a snapshot's requests (by request
-- id), for re-planning after a warm-up.
WITH final AS (
    SELECT p.request_id, t.token_ids, p.max_tokens, p.prompt_sha256, p.sampling_json
    FROM prompts AS p
    JOIN prompt_tokens AS t
        ON t.dataset = p.dataset AND t.snapshot = p.snapshot AND t.request_id = p.request_id
        AND t.tokenizer_sha256 = $tokenizer_sha256
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
)
SELECT * FROM final;
