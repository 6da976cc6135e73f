-- over_length_requests: the prompts of a snapshot that leave no room for one output token
-- within the context ($max_model_len tokens: n_prompt_tokens + 1 > it), in input order: the
-- plan keeps them as items after the planned ones, unpriced, and the run writes their error
-- rows (plan/over_length.py); request_columns.sql has every other prompt. With
-- $done_model_sha256 set (incremental), a prompt that model already has a result for (same
-- prompt_sha256 and sampling_json: an earlier run's error row, or a completion under a
-- longer context) is left out, as done.
WITH tokens AS (
    SELECT request_id, n_prompt_tokens
    FROM prompt_tokens
    WHERE dataset = $dataset AND snapshot = $snapshot AND tokenizer_sha256 = $tokenizer_sha256
),
answered AS (
    SELECT DISTINCT prompt_sha256, sampling_json
    FROM results
    WHERE model_sha256 = $done_model_sha256
),
final AS (
    SELECT p.request_id, t.n_prompt_tokens
    FROM prompts AS p
    JOIN tokens AS t USING (request_id)
    LEFT JOIN answered AS a
        ON a.prompt_sha256 = p.prompt_sha256 AND a.sampling_json = p.sampling_json
    WHERE p.dataset = $dataset AND p.snapshot = $snapshot
        AND t.n_prompt_tokens >= $max_model_len
        AND a.prompt_sha256 IS NULL
    ORDER BY p.line_no, p.rowid
)
SELECT * FROM final;
