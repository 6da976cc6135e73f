-- length_stats: prompt length distribution (tokens) of ($dataset, $snapshot, $tokenizer_sha256).
WITH tokens AS (
    SELECT n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND tokenizer_sha256 = $tokenizer_sha256
),

final AS (
    SELECT
        count(*) AS n_prompts,
        coalesce(sum(n_prompt_tokens), 0)::BIGINT AS input_tokens,
        avg(n_prompt_tokens) AS mean_tokens,
        quantile_cont(n_prompt_tokens, 0.5) AS p50_tokens,
        quantile_cont(n_prompt_tokens, 0.9) AS p90_tokens,
        quantile_cont(n_prompt_tokens, 0.99) AS p99_tokens,
        max(n_prompt_tokens)::BIGINT AS max_tokens
    FROM tokens
)

SELECT * FROM final
