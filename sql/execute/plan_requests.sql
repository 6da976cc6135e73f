-- plan_requests: every request of a plan, in plan order, ready to run (staged once per execution:
-- blend/execute/requests.py). One join of the plan with its prompts and token ids, sorted by seq.
WITH items AS (
    SELECT seq, request_id
    FROM plan_items
    WHERE plan_id = $plan_id
),
final AS (
    SELECT i.seq, i.request_id, p.prompt_sha256, p.sampling_json, t.token_ids
    FROM items AS i
    JOIN prompts AS p
        ON p.dataset = $dataset AND p.snapshot = $snapshot AND p.request_id = i.request_id
    JOIN prompt_tokens AS t
        ON t.dataset = $dataset AND t.snapshot = $snapshot
        AND t.tokenizer_sha256 = $tokenizer_sha256 AND t.request_id = i.request_id
    ORDER BY i.seq
)
SELECT * FROM final;
