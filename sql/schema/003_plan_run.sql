-- schema: tables of the plan and run stage(s) (CONTRACT: table and column names).
CREATE TABLE IF NOT EXISTS plans (
    plan_id              VARCHAR NOT NULL PRIMARY KEY,
    dataset              VARCHAR NOT NULL,
    snapshot             INTEGER NOT NULL,
    planner              VARCHAR NOT NULL,
    model_spec           VARCHAR,
    hardware             VARCHAR,
    tokenizer_sha256     VARCHAR NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    params_json          VARCHAR NOT NULL,
    n_requests           BIGINT  NOT NULL,
    n_batches            BIGINT  NOT NULL,
    sharing_ratio        DOUBLE,            -- prefix sharing kept by this order (adjacent LCP)
    plan_seconds         DOUBLE  NOT NULL,
    predicted_makespan_s DOUBLE,
    optimal_makespan_s   DOUBLE
);

CREATE TABLE IF NOT EXISTS plan_items (
    plan_id     VARCHAR NOT NULL,
    seq         BIGINT  NOT NULL,   -- 0-based position in which the engine is fed
    request_id  VARCHAR NOT NULL,
    batch       BIGINT  NOT NULL,   -- checkpoint group: results are flushed per batch at the latest
    side        VARCHAR,            -- L / R for blended plans, NULL otherwise
    PRIMARY KEY (plan_id, seq)
);

CREATE TABLE IF NOT EXISTS runs (
    run_id          VARCHAR NOT NULL PRIMARY KEY,
    plan_id         VARCHAR NOT NULL,
    dataset         VARCHAR NOT NULL,
    snapshot        INTEGER NOT NULL,
    flow_run_id     VARCHAR,
    engine          VARCHAR NOT NULL,
    engine_version  VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    model_sha256    VARCHAR NOT NULL,
    params_json     VARCHAR NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    status          VARCHAR NOT NULL,  -- running | completed | failed
    n_requests      BIGINT,
    n_errors        BIGINT,
    input_tokens    BIGINT,
    output_tokens   BIGINT,
    cached_tokens   BIGINT,
    engine_start_s  DOUBLE,
    wall_s          DOUBLE,
    results_uri     VARCHAR
);
