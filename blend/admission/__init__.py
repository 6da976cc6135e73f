"""Admission policies: who enters the engine next, while it runs (see base.py)."""

from blend.admission.base import AdmissionKind, AdmissionPolicy, EngineView, InOrderAdmission

__all__ = ["AdmissionKind", "AdmissionPolicy", "EngineView", "InOrderAdmission"]
