-- token_rows: the token rows of ($dataset, $snapshot, $tokenizer_sha256) in no particular order (streamed).
SELECT request_id, token_ids
FROM prompt_tokens
WHERE dataset = $dataset
  AND snapshot = $snapshot
  AND tokenizer_sha256 = $tokenizer_sha256
