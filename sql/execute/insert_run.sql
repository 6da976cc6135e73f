-- insert_run: record a run as started.
INSERT INTO runs (
    run_id, plan_id, dataset, snapshot, flow_run_id, engine, engine_version, model,
    model_sha256, params_json, started_at, status, results_uri
)
VALUES (
    $run_id, $plan_id, $dataset, $snapshot, $flow_run_id, $engine, $engine_version, $model,
    $model_sha256, $params_json, now(), 'running', $results_uri
);
