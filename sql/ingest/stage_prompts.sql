-- stage_prompts: append the registered Arrow batch `ingest_prompt_batch` to the staged prompts.
INSERT INTO ingest_staged_prompts
SELECT
    line_no, request_id, prompt_sha256, prompt, messages_json, sampling_json, max_tokens,
    raw_offset, raw_length
FROM ingest_prompt_batch;
