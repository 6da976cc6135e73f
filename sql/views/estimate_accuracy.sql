-- estimate_accuracy: estimated against actual output tokens, per run and prefix group, with
-- the estimate each request was fed with (the run's re-plan after its warm-up, else the plan's;
-- warm-up requests themselves are left out: they ran to be measured).
CREATE OR REPLACE VIEW estimate_accuracy AS
WITH used AS (
    SELECT
        r.run_id,
        coalesce(o.prefix_group, i.prefix_group) AS prefix_group,
        coalesce(o.est_source, i.est_source) AS est_source,
        coalesce(o.est_output_tokens, i.est_output_tokens) AS estimate,
        r.n_output_tokens AS actual
    FROM results AS r
    JOIN plan_items AS i ON i.plan_id = r.plan_id AND i.request_id = r.request_id
    LEFT JOIN run_orders AS o ON o.run_id = r.run_id AND o.request_id = r.request_id
    WHERE r.error IS NULL AND coalesce(i.side, '') <> 'W' AND i.est_output_tokens IS NOT NULL
),
final AS (
    SELECT
        run_id,
        prefix_group,
        mode(est_source) AS est_source,
        count(*) AS n_requests,
        avg(estimate) AS mean_estimate,
        avg(actual) AS mean_actual,
        avg(abs(estimate - actual)) AS mean_abs_error,
        avg(estimate) / nullif(avg(actual), 0) AS estimate_over_actual
    FROM used
    GROUP BY run_id, prefix_group
)
SELECT * FROM final ORDER BY run_id, n_requests DESC;
