"""Fitting hardware profiles of the step model (blend/cost/step_time.py) to measurements."""
