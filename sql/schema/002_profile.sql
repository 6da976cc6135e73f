-- schema: tables of the profile stage(s) (CONTRACT: table and column names).
CREATE TABLE IF NOT EXISTS prompt_tokens (
    dataset          VARCHAR   NOT NULL,
    snapshot         INTEGER   NOT NULL,
    request_id       VARCHAR   NOT NULL,
    tokenizer_sha256 VARCHAR   NOT NULL,
    n_prompt_tokens  INTEGER   NOT NULL,
    token_ids        INTEGER[] NOT NULL,  -- after the chat template, exactly what the engine is fed
    PRIMARY KEY (dataset, snapshot, tokenizer_sha256, request_id)
);

CREATE TABLE IF NOT EXISTS profiles (
    dataset            VARCHAR   NOT NULL,
    snapshot           INTEGER   NOT NULL,
    tokenizer_sha256   VARCHAR   NOT NULL,
    model              VARCHAR   NOT NULL,
    max_model_len      INTEGER   NOT NULL,
    profiled_at        TIMESTAMPTZ NOT NULL,
    n_prompts          BIGINT    NOT NULL,
    input_tokens       BIGINT    NOT NULL,
    mean_tokens        DOUBLE,
    p50_tokens         DOUBLE,
    p90_tokens         DOUBLE,
    p99_tokens         DOUBLE,
    max_tokens         BIGINT,
    n_over_length      BIGINT    NOT NULL,
    unique_prefix_tokens BIGINT  NOT NULL,  -- nodes of the prompt token trie
    sharing_ratio      DOUBLE,              -- 1 - unique / total: DFS prefix-sharing ratio
    PRIMARY KEY (dataset, snapshot, tokenizer_sha256)
);
