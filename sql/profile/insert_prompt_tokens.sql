-- insert_prompt_tokens: append the registered Arrow table prompt_tokens_batch(request_id, token_ids).
INSERT INTO prompt_tokens (
    dataset, snapshot, request_id, tokenizer_sha256, n_prompt_tokens, token_ids
)
SELECT
    $dataset,
    $snapshot,
    request_id,
    $tokenizer_sha256,
    len(token_ids),
    token_ids
FROM prompt_tokens_batch
