"""blend: offline LLM batch inference with blended batch plans and row-level lineage."""

__version__ = "0.1.0"
