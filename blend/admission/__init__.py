"""Admission policies: who enters the engine next, while it runs (see base.py). Which
policy a plan asks for is its `AdmissionKind` (blend/planners/base.py)."""

from blend.admission.base import AdmissionPolicy, EngineView, InOrderAdmission

__all__ = ["AdmissionPolicy", "EngineView", "InOrderAdmission"]
