-- run_order: a run's re-planned order (empty until the run re-planned after its warm-up).
WITH final AS (
    SELECT seq, plan_seq, request_id, shared_prev, est_output_tokens, est_spread, est_source,
        prefix_group
    FROM run_orders
    WHERE run_id = $run_id
    ORDER BY seq
)
SELECT * FROM final;
