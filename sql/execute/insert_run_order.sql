-- insert_run_order: run $run_id's re-planned order, from the registered Arrow table
-- `new_run_order`.
INSERT INTO run_orders (
    run_id, seq, plan_seq, request_id, shared_prev, est_output_tokens, est_spread, est_source,
    prefix_group
)
SELECT $run_id, seq, plan_seq, request_id, shared_prev, est_output_tokens, est_spread,
    est_source, prefix_group
FROM new_run_order;
