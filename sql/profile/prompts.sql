-- prompts: the prompts of ($dataset, $snapshot) to tokenize, as stored (no sort: the scan streams
-- in bounded memory, where ordering every prompt's text would be a sort of the whole snapshot).
SELECT request_id, prompt, messages_json
FROM prompts
WHERE dataset = $dataset
  AND snapshot = $snapshot
