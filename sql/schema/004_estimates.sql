-- schema: output-length estimates, engine settings, and the re-plan of a run after its warm-up.
-- Columns added to plans and plan_items (stores created earlier get them here too).
ALTER TABLE plans ADD COLUMN IF NOT EXISTS admission VARCHAR;          -- in-order | dual-scan
ALTER TABLE plans ADD COLUMN IF NOT EXISTS max_num_batched_tokens BIGINT;  -- engine settings
ALTER TABLE plans ADD COLUMN IF NOT EXISTS max_num_seqs BIGINT;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS settings_source VARCHAR;    -- vllm-default | search | explicit
ALTER TABLE plans ADD COLUMN IF NOT EXISTS n_warmup BIGINT;            -- items seq < n_warmup run first
ALTER TABLE plans ADD COLUMN IF NOT EXISTS replan_after_warmup BOOLEAN;  -- the planner reads lengths
ALTER TABLE plans ADD COLUMN IF NOT EXISTS search_settings BOOLEAN;    -- settings searched after it
ALTER TABLE plan_items ADD COLUMN IF NOT EXISTS prompt_tokens BIGINT;
ALTER TABLE plan_items ADD COLUMN IF NOT EXISTS shared_prev BIGINT;    -- tokens shared with seq - 1
ALTER TABLE plan_items ADD COLUMN IF NOT EXISTS est_output_tokens DOUBLE;
ALTER TABLE plan_items ADD COLUMN IF NOT EXISTS est_spread DOUBLE;     -- std of log length behind it
ALTER TABLE plan_items ADD COLUMN IF NOT EXISTS est_source VARCHAR;    -- own | warmup | history | max_tokens
ALTER TABLE plan_items ADD COLUMN IF NOT EXISTS prefix_group VARCHAR;  -- key of its top-level prefix group

-- The order a run feeds the requests after its warm-up, made from the lengths it measured
-- (one row per plan item that was not done when the run re-planned).
CREATE TABLE IF NOT EXISTS run_orders (
    run_id            VARCHAR NOT NULL,
    seq               BIGINT  NOT NULL,  -- position in the re-planned order
    plan_seq          BIGINT  NOT NULL,  -- the item's seq in plan_items
    request_id        VARCHAR NOT NULL,
    shared_prev       BIGINT,            -- tokens shared with the item before it (seq - 1)
    est_output_tokens DOUBLE,
    est_spread        DOUBLE,            -- std of log length behind the estimate
    est_source        VARCHAR,
    prefix_group      VARCHAR,
    PRIMARY KEY (run_id, seq)
);

ALTER TABLE runs ADD COLUMN IF NOT EXISTS replanned_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS replan_json VARCHAR;  -- what the warm-up measured, what was chosen
