-- insert_request_classes: append a profile's classes from the registered Arrow table
-- `new_request_classes`.
INSERT INTO request_classes (
    dataset, snapshot, tokenizer_sha256, class_id, n_requests, prompt_tokens, output_tokens
)
SELECT dataset, snapshot, tokenizer_sha256, class_id, n_requests, prompt_tokens, output_tokens
FROM new_request_classes;
