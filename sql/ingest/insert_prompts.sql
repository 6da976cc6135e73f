-- insert_prompts: copy the staged prompts, except repeated ids, into `prompts` as snapshot $snapshot of $dataset.
INSERT INTO prompts (
    dataset, snapshot, request_id, line_no, prompt_sha256, prompt, messages_json,
    sampling_json, max_tokens
)
WITH final AS (
    SELECT
        $dataset AS dataset,
        $snapshot AS snapshot,
        ids.request_id,
        staged.line_no,
        coalesce(
            staged.prompt_sha256, sha256(coalesce(staged.prompt, staged.messages_json))
        ) AS prompt_sha256,
        staged.prompt,
        staged.messages_json,
        staged.sampling_json,
        staged.max_tokens
    FROM ingest_staged_prompts AS staged
    INNER JOIN ingest_ids AS ids ON ids.line_no = staged.line_no
    WHERE ids.first_line_no IS NULL
)

SELECT * FROM final
ORDER BY line_no;
