-- request_classes: the classes of one profile, by class_id.
SELECT class_id, n_requests, prompt_tokens, output_tokens
FROM request_classes
WHERE dataset = $dataset
  AND snapshot = $snapshot
  AND tokenizer_sha256 = $tokenizer_sha256
ORDER BY class_id
