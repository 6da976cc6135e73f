-- name: insert_prompt_tokens: append the registered Arrow table prompt_tokens_batch (same columns).
INSERT INTO prompt_tokens BY NAME
SELECT dataset, snapshot, request_id, tokenizer_sha256, n_prompt_tokens, token_ids
FROM prompt_tokens_batch
