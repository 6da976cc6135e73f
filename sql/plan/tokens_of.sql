-- tokens_of: the token ids of the registered `wanted_requests` (pos, request_id) of a snapshot.
WITH final AS (
    SELECT w.pos, t.token_ids
    FROM wanted_requests AS w
    JOIN prompt_tokens AS t
        ON t.request_id = w.request_id AND t.dataset = $dataset AND t.snapshot = $snapshot
        AND t.tokenizer_sha256 = $tokenizer_sha256
)
SELECT * FROM final;
