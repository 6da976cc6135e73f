-- insert_prompts: copy the staged prompts, except repeated ids, into `prompts` as snapshot $snapshot of $dataset.
-- Staged prompts and ingest_ids are both in line order (staging appends in file order, assign_ids
-- sorts), so they pair by position: no join, no sort of the payload. publish() checks the count.
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
    POSITIONAL JOIN ingest_ids AS ids
    WHERE ids.first_line_no IS NULL AND ids.line_no = staged.line_no
)

SELECT * FROM final;
