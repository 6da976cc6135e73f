-- plan_items: a plan's items in seq order, without their tokens (what admission decides from).
WITH final AS (
    SELECT seq, request_id, side, prompt_tokens, shared_prev, est_output_tokens, est_spread
    FROM plan_items
    WHERE plan_id = $plan_id
    ORDER BY seq
)
SELECT * FROM final;
