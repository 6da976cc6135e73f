-- insert_prompt_tokens: append the token rows (request_id, token_ids) of the Parquet file $path.
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
FROM read_parquet($path)
