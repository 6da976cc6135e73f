-- record_replan: when a run re-planned after its warm-up, and what it measured and chose.
UPDATE runs
SET replanned_at = now(), replan_json = $replan_json
WHERE run_id = $run_id;
