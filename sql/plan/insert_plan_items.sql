-- insert_plan_items: append a plan's items from the registered Arrow table `new_plan_items`.
INSERT INTO plan_items (
    plan_id, seq, request_id, batch, side, prompt_tokens, shared_prev, est_output_tokens,
    est_spread, est_source, prefix_group
)
SELECT plan_id, seq, request_id, batch, side, prompt_tokens, shared_prev, est_output_tokens,
    est_spread, est_source, prefix_group
FROM new_plan_items;
