-- schema: the sequential engine's bound (T_seq, vLLM) beside T_opt in the plan header, both
-- at the plan's estimated output lengths (stores created earlier get the column here too).
ALTER TABLE plans ADD COLUMN IF NOT EXISTS t_seq_makespan_s DOUBLE;  -- T_seq at the estimates (s)
