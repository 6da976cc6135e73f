-- latest_answers: the latest answer of every request of a dataset's newest snapshot, in input order (latest_result_picks picks it; the wide result columns are read once, for the picked rows).
WITH newest AS (
    SELECT max(snapshot) AS snapshot FROM prompts WHERE dataset = $dataset
)
SELECT
    a.request_id, a.output_text, a.finish_reason, a.n_prompt_tokens, a.n_output_tokens,
    a.n_cached_tokens, a.error, a.run_id, a.plan_id, a.model, a.model_sha256, a.sampling_json,
    a.engine, a.engine_version, a.started_at, a.finished_at, a.prompt_sha256,
    p.messages_json IS NOT NULL AS is_chat
FROM prompts AS p
JOIN newest USING (snapshot)
JOIN latest_result_picks AS k ON k.dataset = p.dataset AND k.request_id = p.request_id
JOIN results AS a
    ON a.dataset = k.dataset AND a.request_id = k.request_id AND a.run_id = k.run_id
    AND a.seq = k.seq AND a.prompt_sha256 = p.prompt_sha256
WHERE p.dataset = $dataset
ORDER BY p.line_no;
