"""Fitting hardware profiles of the step model (blend/simulate/step_time.py) to measurements."""
