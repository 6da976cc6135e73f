-- history_lengths: output lengths of earlier completions of this dataset (any snapshot) by the
-- same model (model_sha256), with their prompts' token ids (same tokenizer) and sampling, the
-- most recent $limit first. Estimates of new prompts borrow them (planners/estimates.py).
SELECT prompt_sha256, sampling_json, n_output_tokens, token_ids
FROM recent_answers($dataset, $model_sha256, $tokenizer_sha256, $limit)
ORDER BY finished_at DESC, prompt_sha256, sampling_json;
