-- schema: the one definition of a run's prefix-cache hit rate, used by the run_summary view and
-- by the run totals the CLI and the Prefect artifacts show: prompt tokens served from the prefix
-- cache / prompt tokens, over the run's result rows (each request once, as it finished; error
-- rows count their prompt tokens, none cached). NULL without prompt tokens. The engine's own
-- counter (queries / hits) also counts the warm-up's requests run again after a restart and
-- prompts recomputed after a preemption: it is kept apart, as runs.engine_prefix_cache_hit_rate.
CREATE OR REPLACE MACRO prefix_cache_hit_rate(cached_tokens, prompt_tokens) AS
    cached_tokens / nullif(prompt_tokens, 0);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS engine_prefix_cache_hit_rate DOUBLE;
