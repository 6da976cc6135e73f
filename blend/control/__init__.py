"""Prefill-decode control and many engines: request classes, the fluid LP and its inputs,
phase plans, the fleet simulator, the data-parallel engine split."""
