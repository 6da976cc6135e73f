-- delete_prompt_tokens: drop the token rows of ($dataset, $snapshot, $tokenizer_sha256).
DELETE FROM prompt_tokens
WHERE dataset = $dataset
  AND snapshot = $snapshot
  AND tokenizer_sha256 = $tokenizer_sha256
