-- over_length: how many prompts cannot run or will be cut, and the first $max_ids of each, by request_id.
-- cannot_run: n_prompt_tokens + 1 > $max_model_len (not even one output token fits).
-- will_truncate: runnable, but n_prompt_tokens + max_tokens > $max_model_len (disjoint classes).
-- The ids come from top-n aggregates (min(request_id, n)): memory for $max_ids ids per class,
-- where ranking every flagged prompt (a window) could not spill.
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

final AS (
    SELECT
        coalesce(count_if(cannot_run), 0) AS n_over_length,
        coalesce(count_if(will_truncate), 0) AS n_will_truncate,
        coalesce(min(request_id, $max_ids) FILTER (WHERE cannot_run), []) AS over_length_ids,
        coalesce(min(request_id, $max_ids) FILTER (WHERE will_truncate), []) AS will_truncate_ids
    FROM classified
)

SELECT * FROM final
