-- length_histogram: prompts per length bin of width $bin_tokens for ($dataset, $snapshot, $tokenizer_sha256).
WITH tokens AS (
    SELECT n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND tokenizer_sha256 = $tokenizer_sha256
),

binned AS (
    SELECT (n_prompt_tokens // $bin_tokens) * $bin_tokens AS lo_tokens
    FROM tokens
),

final AS (
    SELECT lo_tokens, lo_tokens + $bin_tokens AS hi_tokens, count(*) AS n_prompts
    FROM binned
    GROUP BY lo_tokens
    ORDER BY lo_tokens
)

SELECT * FROM final
