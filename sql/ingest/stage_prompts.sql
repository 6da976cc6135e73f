-- stage_prompts: append the Arrow batch `ingest_batch` (a Python variable) to the staged prompts.
INSERT INTO ingest_staged_prompts
SELECT
    line_no, request_id, prompt_sha256, prompt, messages_json, sampling_json, max_tokens,
    raw_offset, raw_length
FROM ingest_batch;
