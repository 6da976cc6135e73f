-- run_picks: the result row run $run_id wrote last for each request of a dataset's newest snapshot, with its input line, key columns only, written to the Parquet file $picks (export/picked_answers reads the wide columns for it).
COPY (
    WITH newest AS (
        SELECT max(snapshot) AS snapshot FROM prompts WHERE dataset = $dataset
    ),
    picks AS (
        SELECT request_id, run_id, seq, prompt_sha256
        FROM results
        WHERE dataset = $dataset AND run_id = $run_id
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY finished_at DESC) = 1
    )
    SELECT
        k.request_id, k.run_id, k.seq, p.prompt_sha256, p.line_no,
        p.messages_json IS NOT NULL AS is_chat
    FROM prompts AS p
    JOIN newest USING (snapshot)
    JOIN picks AS k ON k.request_id = p.request_id AND k.prompt_sha256 = p.prompt_sha256
    WHERE p.dataset = $dataset
) TO $picks (FORMAT parquet);
