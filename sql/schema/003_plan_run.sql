-- schema: tables of the plan and run stage(s) (table and column names are relied on: extend, do not rename).
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
    results_uri     VARCHAR,
    deployment_name VARCHAR,           -- Prefect deployment that started the flow run
    git_revision    VARCHAR,           -- code revision of the first execution ("-dirty" if modified)
    n_attempts      INTEGER,           -- executions of this run id (1 + resumes)
    engine_busy_s   DOUBLE,            -- time inside engine add_request/step, summed (s)
    n_engine_restarts INTEGER,         -- engine failures survived by a restart, summed
    prefix_cache_hit_rate DOUBLE       -- cached / prompt tokens of the run's rows (008_*.sql)
);

-- Columns added after the first release: stores created earlier get them here.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS deployment_name VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS git_revision VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_attempts INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS engine_busy_s DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_engine_restarts INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS prefix_cache_hit_rate DOUBLE;
