"""Stage 3, plan: estimate output lengths, order the requests with a planner and store the
plan with the engine settings it starts with (`stage.plan_dataset`); `items` reads a stored
plan back in order; `capacity` predicts how long a plan takes on n engines."""
