-- run_totals: totals of one run, read from its Parquet parts ($glob: the run folder's parts).
WITH parts AS (
    SELECT * FROM read_parquet($glob)
),
final AS (
    SELECT
        count(*)                                   AS n_requests,
        count(*) FILTER (WHERE error IS NOT NULL)  AS n_errors,
        coalesce(sum(n_prompt_tokens), 0)          AS input_tokens,
        coalesce(sum(n_output_tokens), 0)          AS output_tokens,
        coalesce(sum(n_cached_tokens), 0)          AS cached_tokens,
        -- the one definition (sql/schema/008_prefix_cache_hit_rate.sql), as run_summary has it
        prefix_cache_hit_rate(sum(n_cached_tokens), sum(n_prompt_tokens)) AS prefix_cache_hit_rate,
        max(n_prompt_tokens) FILTER (WHERE error IS NULL) AS max_prompt_tokens,
        count(DISTINCT request_id)                 AS n_distinct_requests
    FROM parts
)
SELECT * FROM final;
