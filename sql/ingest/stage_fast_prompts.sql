-- stage_fast_prompts: append the registered Arrow batch `ingest_fast_batch` (vectorised path) to the staged prompts.
-- prompt_sha256 stays NULL: it is computed once, in parallel, when the rows are published.
INSERT INTO ingest_staged_prompts
SELECT
    line_no,
    request_id,
    NULL AS prompt_sha256,
    prompt,
    messages_json,
    sampling_json,
    max_tokens,
    raw_offset,
    raw_length
FROM ingest_fast_batch;
