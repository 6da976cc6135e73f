-- sort_rows: the token ids of the requests plan/request_columns.sql reads (tie: their rowid in prompts),
-- and of the registered length hints `plan_hint_rows` (tie: past every rowid), in no
-- particular order: plan/sorted_requests.py sorts them in bounded memory.
WITH tokens AS (
    SELECT request_id, token_ids, n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),
answered AS (
    SELECT prompt_sha256, sampling_json, bool_or(error IS NULL) AS completed
    FROM results
    WHERE model_sha256 = $done_model_sha256
    GROUP BY prompt_sha256, sampling_json
),
requests AS (
    SELECT p.rowid AS tie, t.token_ids
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    LEFT JOIN answered AS a
        ON a.prompt_sha256 = p.prompt_sha256 AND a.sampling_json = p.sampling_json
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
        AND t.n_prompt_tokens < $max_model_len  -- runnable: over_length_requests.sql has the rest
        AND NOT (
            a.prompt_sha256 IS NOT NULL
            AND (a.completed OR t.n_prompt_tokens >= $max_model_len)
        )
),
rows_to_sort AS (
    SELECT tie, token_ids FROM requests
    UNION ALL
    SELECT tie, token_ids FROM plan_hint_rows
),
final AS (
    SELECT tie, token_ids FROM rows_to_sort
)
SELECT * FROM final;
