-- insert_dataset: record snapshot $snapshot of $dataset (written last, in the same transaction as its rows).
INSERT INTO datasets (
    dataset, snapshot, source_uri, source_sha256, source_format, ingested_at, n_rows, n_rejected
)
VALUES (
    $dataset, $snapshot, $source_uri, $source_sha256, $source_format, now(), $n_rows, $n_rejected
);
