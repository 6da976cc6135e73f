-- latest_picks: the result row each request of a dataset's newest snapshot exports (latest_result_picks: its latest answer) with its input line, key columns only, written to the Parquet file $picks (export/picked_answers reads the wide columns for it).
COPY (
    WITH newest AS (
        SELECT max(snapshot) AS snapshot FROM prompts WHERE dataset = $dataset
    )
    SELECT
        k.request_id, k.run_id, k.seq, p.prompt_sha256, p.line_no,
        p.messages_json IS NOT NULL AS is_chat
    FROM prompts AS p
    JOIN newest USING (snapshot)
    JOIN latest_result_picks AS k ON k.dataset = p.dataset AND k.request_id = p.request_id
    WHERE p.dataset = $dataset
) TO $picks (FORMAT parquet);
