-- create_staged_rejects: TEMP table of the records of the file being ingested that failed validation.
CREATE OR REPLACE TEMP TABLE ingest_staged_rejects (
    line_no  BIGINT  NOT NULL,
    reason   VARCHAR NOT NULL,
    raw      VARCHAR
);
