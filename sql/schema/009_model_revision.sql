-- schema: the Hugging Face revision of the model, beside its name (stores created earlier get
-- the columns here). A model given by id (`--model org/name[@revision]`) runs from a snapshot of
-- the local Hugging Face cache: `model` is the id and `model_revision` the snapshot's commit
-- hash (blend/engines/model_source.py); NULL for a model folder outside that cache.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS model_revision VARCHAR;
ALTER TABLE profiles ADD COLUMN IF NOT EXISTS model_revision VARCHAR;  -- of the model that profiled
