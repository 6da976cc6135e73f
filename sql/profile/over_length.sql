-- over_length: how many prompts cannot run or will be cut, and the first $max_ids of each, by request_id.
-- cannot_run: n_prompt_tokens + 1 > $max_model_len (not even one output token fits).
-- will_truncate: runnable, but n_prompt_tokens + max_tokens > $max_model_len (disjoint classes).
WITH tokens AS (
    SELECT t.request_id, t.n_prompt_tokens, p.max_tokens
    FROM prompt_tokens AS t
    JOIN prompts AS p USING (dataset, snapshot, request_id)
    WHERE t.dataset = $dataset
      AND t.snapshot = $snapshot
      AND t.tokenizer_sha256 = $tokenizer_sha256
),

classified AS (
    SELECT
        request_id,
        n_prompt_tokens + 1 > $max_model_len AS cannot_run,
        n_prompt_tokens + 1 <= $max_model_len
            AND n_prompt_tokens + max_tokens > $max_model_len AS will_truncate
    FROM tokens
),

ranked AS (
    SELECT
        request_id,
        cannot_run,
        will_truncate,
        row_number() OVER (PARTITION BY cannot_run, will_truncate ORDER BY request_id) AS id_rank
    FROM classified
    WHERE cannot_run OR will_truncate
),

final AS (
    SELECT
        coalesce(count_if(cannot_run), 0) AS n_over_length,
        coalesce(count_if(will_truncate), 0) AS n_will_truncate,
        coalesce(
            list(request_id ORDER BY request_id) FILTER (WHERE cannot_run AND id_rank <= $max_ids),
            []
        ) AS over_length_ids,
        coalesce(
            list(request_id ORDER BY request_id)
                FILTER (WHERE will_truncate AND id_rank <= $max_ids),
            []
        ) AS will_truncate_ids
    FROM ranked
)

SELECT * FROM final
