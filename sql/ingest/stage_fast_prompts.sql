-- stage_fast_prompts: append the registered Arrow batch `ingest_fast_batch` (vectorised path) to the staged prompts, hashing the prompt here.
-- sha256 of a VARCHAR hashes its UTF-8 bytes: the same hex digest as hashlib on the exact path.
INSERT INTO ingest_staged_prompts
SELECT
    line_no,
    request_id,
    sha256(coalesce(prompt, messages_json)) AS prompt_sha256,
    prompt,
    messages_json,
    sampling_json,
    max_tokens,
    raw_offset,
    raw_length
FROM ingest_fast_batch;
