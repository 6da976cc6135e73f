"""Engines execute requests; the executor feeds them in plan order and never plans."""

from blend.engines.base import Engine, EngineConfig, EngineOutput, EngineRequest

__all__ = ["Engine", "EngineConfig", "EngineOutput", "EngineRequest"]
