"""Prefill-decode control: request classes, the fluid LP, its inputs, phase plans."""
