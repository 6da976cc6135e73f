-- insert_plan_items: append plan $plan_id's items from the registered Arrow table
-- `new_plan_items` (its text columns may be dictionary-encoded: a few distinct values each).
INSERT INTO plan_items (
    plan_id, seq, request_id, batch, side, prompt_tokens, shared_prev, est_output_tokens,
    est_spread, est_source, prefix_group
)
SELECT $plan_id, seq, request_id, batch, side::VARCHAR, prompt_tokens, shared_prev,
    est_output_tokens, est_spread, est_source::VARCHAR, prefix_group::VARCHAR
FROM new_plan_items;
