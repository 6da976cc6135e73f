-- delete_request_classes: drop the request classes of ($dataset, $snapshot, $tokenizer_sha256).
DELETE FROM request_classes
WHERE dataset = $dataset
  AND snapshot = $snapshot
  AND tokenizer_sha256 = $tokenizer_sha256
