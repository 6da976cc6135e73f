-- request_columns: the tokenized requests of a snapshot, in input order, as a planner sees
-- them but without their token ids (plan/sorted_requests.py sorts those in bounded memory).
-- Only prompts that leave room for an output within the context, $max_model_len tokens:
-- the others are no work (over_length_requests.sql; the plan keeps them unpriced).
-- With $done_model_sha256 set (incremental), a prompt is left out when that model already has
-- a result for the same prompt_sha256 and sampling_json in any run: a completion, or an error
-- row of a prompt that can never run (longer than the context, $max_model_len tokens).
-- own_output_tokens: the output length of $history_model_sha256's earlier result of the same
-- prompt and sampling among its newest $limit (macros/recent_answers.sql; NULL: none). tie:
-- the row's rowid in prompts, what sort_rows.sql names it by (stable while the plan reads).
WITH tokens AS (
    SELECT request_id, n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),
answered AS (
    SELECT prompt_sha256, sampling_json, bool_or(error IS NULL) AS completed
    FROM results
    WHERE model_sha256 = $done_model_sha256
    GROUP BY prompt_sha256, sampling_json
),
history AS (
    SELECT prompt_sha256, sampling_json, n_output_tokens
    FROM recent_answers($dataset, $history_model_sha256, $tokenizer_sha256, $limit)
),
final AS (
    SELECT p.request_id, p.rowid AS tie, t.n_prompt_tokens, p.max_tokens,
        h.n_output_tokens AS own_output_tokens
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    LEFT JOIN answered AS a
        ON a.prompt_sha256 = p.prompt_sha256 AND a.sampling_json = p.sampling_json
    LEFT JOIN history AS h
        ON h.prompt_sha256 = p.prompt_sha256 AND h.sampling_json = p.sampling_json
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
        AND t.n_prompt_tokens < $max_model_len  -- runnable: over_length_requests.sql has the rest
        AND NOT (
            a.prompt_sha256 IS NOT NULL
            AND (a.completed OR t.n_prompt_tokens >= $max_model_len)
        )
    ORDER BY p.line_no, p.rowid
)
SELECT * FROM final;
