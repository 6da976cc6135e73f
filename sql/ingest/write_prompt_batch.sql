-- write_prompt_batch: append the Arrow batch `ingest_batch` (a Python variable) to `prompts` as snapshot $snapshot of $dataset.
-- Runs inside the ingest's open transaction; derived ids (no custom_id/id) are the first 16 hex chars of prompt_sha256
-- (computed here if not staged), suffixed later by renumber_derived; repeated ids are deleted by delete_duplicates.
INSERT INTO prompts (
    dataset, snapshot, request_id, line_no, prompt_sha256, prompt, messages_json,
    sampling_json, max_tokens
)
WITH hashed AS (
    SELECT
        *,
        -- sha256 of a VARCHAR hashes its UTF-8 bytes: the digest hashlib gives the exact path.
        coalesce(prompt_sha256, sha256(coalesce(prompt, messages_json))) AS sha
    FROM ingest_batch
),

final AS (
    SELECT
        $dataset AS dataset,
        $snapshot AS snapshot,
        coalesce(request_id, left(sha, 16)) AS request_id,
        line_no,
        sha AS prompt_sha256,
        prompt,
        messages_json,
        sampling_json,
        max_tokens
    FROM hashed
)

SELECT * FROM final;
