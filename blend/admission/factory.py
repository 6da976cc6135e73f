"""The admission policy a plan asks for, over its order (one function for executor and sim)."""

from __future__ import annotations

from blend.admission.base import AdmissionPolicy, InOrderAdmission
from blend.admission.dual_scan import DualScanAdmission, DualScanOptions, ScanSequence
from blend.cost.model import CostModel
from blend.engines.settings import EngineSettings
from blend.planners.base import AdmissionKind


def admission_policy(
    kind: AdmissionKind,
    sequence: ScanSequence,
    cost: CostModel,
    settings: EngineSettings,
    dual_scan: DualScanOptions | None = None,
) -> AdmissionPolicy:
    """In-order feeding keeps two steps' worth of requests (2 x max_num_seqs) queued ahead;
    the dual scan admits from both ends of the (density-sorted) sequence, within the engine's
    settings (`dual_scan` overrides its other options); the LP gate admits by class, as the
    fluid LP's prefill shares say (lp_gate.py)."""
    if kind is AdmissionKind.DUAL_SCAN:
        return DualScanAdmission(sequence, cost, dual_scan, settings)
    if kind is AdmissionKind.LP_GATE:
        from blend.admission.lp_gate import LpGateAdmission

        return LpGateAdmission(sequence, cost, settings=settings)
    if kind is AdmissionKind.IN_ORDER:
        return InOrderAdmission(sequence.index.tolist(), window=2 * settings.max_num_seqs)
    raise ValueError(f"Unknown admission kind: {kind!r}")
