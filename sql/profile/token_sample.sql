-- token_sample: $n_rows token rows of ($dataset, $snapshot, $tokenizer_sha256) picked by a hash of
-- their request_id: a fixed pseudo-random sample (a top-n, so DuckDB holds only $n_rows rows).
WITH tokens AS (
    SELECT request_id, token_ids
    FROM prompt_tokens
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND tokenizer_sha256 = $tokenizer_sha256
),

final AS (
    SELECT request_id, token_ids
    FROM tokens
    ORDER BY hash(request_id), request_id
    LIMIT $n_rows
)

SELECT * FROM final
