-- plan_report: a stored plan's header and how many of its items each estimate source covers.
WITH sources AS (
    SELECT coalesce(est_source, 'unknown') AS est_source, count(*) AS n
    FROM plan_items
    WHERE plan_id = $plan_id
    GROUP BY ALL
),
final AS (
    SELECT p.plan_id, p.dataset, p.snapshot, p.planner, p.tokenizer_sha256, p.n_requests,
        p.n_batches, p.sharing_ratio, p.plan_seconds, p.model_spec, p.hardware, p.n_warmup,
        p.admission, p.max_num_batched_tokens, p.max_num_seqs, p.settings_source,
        p.t_seq_makespan_s, p.optimal_makespan_s,
        (SELECT map(list(est_source), list(n)) FROM sources) AS estimate_sources
    FROM plans AS p
    WHERE p.plan_id = $plan_id
)
SELECT * FROM final;
