-- schema: dead runs: a run whose process died while it was `running` is marked `interrupted`.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS interrupted_at TIMESTAMPTZ;  -- when it was found dead
