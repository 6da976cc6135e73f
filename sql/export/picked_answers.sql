-- picked_answers: the picked result rows of the Parquet file $picks (export/latest_picks or export/run_picks) with their wide columns, in input order. A query of its own: the join and the sort then share DuckDB's memory cap with no ranking beside them.
SELECT
    a.request_id, a.output_text, a.finish_reason, a.n_prompt_tokens, a.n_output_tokens,
    a.n_cached_tokens, a.error, a.run_id, a.plan_id, a.model, a.model_sha256, a.sampling_json,
    a.engine, a.engine_version, a.started_at, a.finished_at, a.prompt_sha256,
    k.is_chat
FROM read_parquet($picks) AS k
JOIN results AS a
    ON a.dataset = $dataset AND a.request_id = k.request_id AND a.run_id = k.run_id
    AND a.seq = k.seq AND a.prompt_sha256 = k.prompt_sha256
ORDER BY k.line_no;
