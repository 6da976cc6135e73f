-- upsert_profile: store one profile row, replacing the one with the same key.
INSERT OR REPLACE INTO profiles BY NAME
SELECT
    $dataset AS dataset,
    $snapshot AS snapshot,
    $tokenizer_sha256 AS tokenizer_sha256,
    $model AS model,
    $max_model_len AS max_model_len,
    $profiled_at AS profiled_at,
    $n_prompts AS n_prompts,
    $input_tokens AS input_tokens,
    $mean_tokens AS mean_tokens,
    $p50_tokens AS p50_tokens,
    $p90_tokens AS p90_tokens,
    $p99_tokens AS p99_tokens,
    $max_tokens AS max_tokens,
    $n_over_length AS n_over_length,
    $n_will_truncate AS n_will_truncate,
    $unique_prefix_tokens AS unique_prefix_tokens,
    $sharing_ratio AS sharing_ratio,
    $min_shared_tokens AS min_shared_tokens,
    $n_prefix_groups AS n_prefix_groups,
    $tokenize_s AS tokenize_s,
    $sql_s AS sql_s
