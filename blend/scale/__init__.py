"""Scale-out: one plan run by several engines at once (Ray actors: blend/scale/ray_fleet.py)."""
