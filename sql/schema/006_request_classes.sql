-- schema: request classes of a profile (blend/control/classes.py): k-means clusters of the
-- requests on (log prompt tokens, log estimated output tokens), the fluid LP's classes.
CREATE TABLE IF NOT EXISTS request_classes (
    dataset          VARCHAR NOT NULL,
    snapshot         INTEGER NOT NULL,
    tokenizer_sha256 VARCHAR NOT NULL,  -- with dataset and snapshot: the profile's key
    class_id         INTEGER NOT NULL,  -- 0-based, by ascending output / prompt ratio
    n_requests       BIGINT  NOT NULL,
    prompt_tokens    DOUBLE  NOT NULL,  -- mean prompt tokens of the class's requests
    output_tokens    DOUBLE  NOT NULL,  -- mean estimated output tokens (never true lengths)
    PRIMARY KEY (dataset, snapshot, tokenizer_sha256, class_id)
);
