"""The admission policy a plan asks for, over its order (one function for executor and sim)."""

from __future__ import annotations

from dataclasses import replace

from blend.admission.base import AdmissionKind, AdmissionPolicy, InOrderAdmission
from blend.admission.dual_scan import DualScanAdmission, DualScanOptions, ScanSequence
from blend.cost import CostModel
from blend.engine_settings import EngineSettings


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
    max_num_seqs = settings.max_num_seqs
    if kind is AdmissionKind.DUAL_SCAN:
        options = replace(
            dual_scan or DualScanOptions(),
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=settings.max_num_batched_tokens,
        )
        return DualScanAdmission(sequence, cost, options)
    if kind is AdmissionKind.LP_GATE:
        from blend.admission.lp_gate import LpGateAdmission, LpGateOptions

        return LpGateAdmission(
            sequence,
            cost,
            LpGateOptions(
                max_num_seqs=max_num_seqs, max_num_batched_tokens=settings.max_num_batched_tokens
            ),
        )
    if kind is AdmissionKind.IN_ORDER:
        return InOrderAdmission(sequence.index.tolist(), window=2 * max_num_seqs)
    raise ValueError(f"Unknown admission kind: {kind!r}")
