"""Stage 4, execute: run a stored plan on an engine and write results with lineage.

`stage.execute_plan` owns a run: the warm-up, the re-plan (`replan`), the rest, parts and
run records; `ray_fleet` runs the same plan on several engines of a Ray cluster."""
