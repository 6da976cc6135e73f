"""Scale-out: one plan run by several engines at once (Ray actors: blend/execute/ray_fleet.py)."""
