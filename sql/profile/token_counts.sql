-- token_counts: rows and tokens of ($dataset, $snapshot, $tokenizer_sha256), to size the sorted ranges.
WITH tokens AS (
    SELECT n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND tokenizer_sha256 = $tokenizer_sha256
),

final AS (
    SELECT count(*) AS n_rows, coalesce(sum(n_prompt_tokens), 0)::BIGINT AS n_tokens
    FROM tokens
)

SELECT * FROM final
