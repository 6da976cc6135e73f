"""A HeteGen hardware profile: the rates placement and cost need, stored as JSON.

Rates count a linear layer's weights (parameters), not bytes, so one profile serves any
dtype of the model's weights; bytes enter only through the host-to-device copy.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from blend.cost.model import HardwareSpec

SCHEMA_VERSION = 1


class ProfileError(ValueError):
    """A profile file or value that cannot be used; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class HeteGenProfile:
    """Measured (or assumed) rates of one CPU+GPU machine.

    cpu_weights_per_s: batch size -> weights of a linear layer the CPU multiplies per second
        at that batch (F.linear over [batch, in] inputs; weights/s = in * out / seconds).
    h2d_bytes_s: host-to-device copy bandwidth from pinned memory (bytes/s); None: no GPU.
    gpu_weights_per_s: batch size -> weights/s of the same GEMMs on the GPU; empty: no GPU.
    """

    name: str
    cpu_weights_per_s: dict[int, float]
    h2d_bytes_s: float | None = None
    gpu_weights_per_s: dict[int, float] = field(default_factory=dict)
    cpu_threads: int = 0  # torch threads the CPU GEMMs ran on (0: not recorded)
    cpu_dtype: str = "bfloat16"  # dtype of the CPU GEMMs measured
    gpu_dtype: str = "float16"  # dtype of the GPU GEMMs measured
    gpu_name: str = ""
    source: str = ""  # how the numbers were obtained
    points: list[dict[str, Any]] = field(default_factory=list)  # raw measurements

    def __post_init__(self) -> None:
        _check_rates(self.name, "cpu_weights_per_s", self.cpu_weights_per_s, required=True)
        _check_rates(self.name, "gpu_weights_per_s", self.gpu_weights_per_s, required=False)
        if self.h2d_bytes_s is not None and not self.h2d_bytes_s > 0:
            raise ProfileError(f"profile {self.name!r}: h2d_bytes_s must be > 0")

    @property
    def has_gpu(self) -> bool:
        return self.h2d_bytes_s is not None and bool(self.gpu_weights_per_s)

    def cpu_s(self, n_weights: float, batch: int) -> float:
        """Seconds the CPU takes to multiply `n_weights` weights by a batch of `batch`."""
        return n_weights * _seconds_per_weight(self.cpu_weights_per_s, batch)

    def gpu_s(self, n_weights: float, batch: int) -> float:
        """Seconds the GPU takes for the same GEMM."""
        self._require_gpu()
        return n_weights * _seconds_per_weight(self.gpu_weights_per_s, batch)

    def h2d_s(self, n_bytes: float) -> float:
        """Seconds to copy `n_bytes` from pinned host memory to the GPU."""
        self._require_gpu()
        assert self.h2d_bytes_s is not None
        return n_bytes / self.h2d_bytes_s

    def _require_gpu(self) -> None:
        if not self.has_gpu:
            raise ProfileError(
                f"profile {self.name!r} has no GPU rates (measured without CUDA): measure on "
                "the GPU machine or add assumed ones (hardware_profile.with_assumed_gpu)"
            )

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("cpu_weights_per_s", "gpu_weights_per_s"):
            data[key] = {str(b): r for b, r in sorted(data[key].items())}
        return json.dumps({"schema_version": SCHEMA_VERSION, **data}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "<text>") -> HeteGenProfile:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{where}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: expected a JSON object")
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise ProfileError(f"{where}: schema_version {version!r}, expected {SCHEMA_VERSION}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfileError(f"{where}: unknown fields {unknown}")
        for key in ("cpu_weights_per_s", "gpu_weights_per_s"):
            data[key] = _rates_from_json(where, key, data.get(key, {}))
        try:
            return cls(**data)
        except TypeError as exc:
            raise ProfileError(f"{where}: {exc}") from None
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc}") from None

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed over `path`)."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> HeteGenProfile:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
        return cls.from_json(text, where=str(path))


def roofline_weights_per_s(
    flops: float, bandwidth_bytes_s: float, dtype_bytes: int, batches: list[int]
) -> dict[int, float]:
    """Weights/s of a GEMM at each batch on a roofline: each weight is read once
    (dtype_bytes / bandwidth s) and multiplied by every row (2 * batch / flops s)."""
    return {b: 1.0 / max(2.0 * b / flops, dtype_bytes / bandwidth_bytes_s) for b in batches}


def with_assumed_gpu(
    profile: HeteGenProfile, hardware: HardwareSpec, h2d_bytes_s: float, dtype_bytes: int = 2
) -> HeteGenProfile:
    """`profile` (its CPU rates) with GPU rates assumed from a hardware spec's roofline
    (effective FLOP/s and bandwidth) and a stated host-to-device bandwidth."""
    batches = sorted(profile.cpu_weights_per_s)
    gpu = roofline_weights_per_s(
        hardware.effective_flops, hardware.effective_bandwidth, dtype_bytes, batches
    )
    note = (
        f"GPU assumed: {hardware.name} roofline (effective {hardware.effective_flops:.3g} "
        f"FLOP/s, {hardware.effective_bandwidth:.3g} B/s), host-to-device {h2d_bytes_s:.3g} B/s"
    )
    return replace(
        profile,
        h2d_bytes_s=h2d_bytes_s,
        gpu_weights_per_s=gpu,
        gpu_name=hardware.name,
        source=f"{profile.source}; {note}" if profile.source else note,
    )


def _seconds_per_weight(rates: dict[int, float], batch: int) -> float:
    """1 / rate at `batch`: linear in seconds between measured batches, the smallest batch's
    below them and, above them, the largest's scaled with the batch (as if compute bound: an
    upper bound)."""
    if batch < 1:
        raise ProfileError(f"batch must be >= 1, got {batch}")
    batches = sorted(rates)
    if batch <= batches[0]:
        return 1.0 / rates[batches[0]]
    if batch >= batches[-1]:
        # beyond the measured range the GEMM only gets slower: scale with the batch (compute)
        return batch / batches[-1] / rates[batches[-1]]
    i = bisect.bisect_left(batches, batch)
    lo, hi = batches[i - 1], batches[i]
    t_lo, t_hi = 1.0 / rates[lo], 1.0 / rates[hi]
    return t_lo + (t_hi - t_lo) * (batch - lo) / (hi - lo)


def _check_rates(name: str, key: str, rates: dict[int, float], required: bool) -> None:
    if required and not rates:
        raise ProfileError(f"profile {name!r}: {key} is empty")
    for batch, rate in rates.items():
        if not isinstance(batch, int) or batch < 1:
            raise ProfileError(f"profile {name!r}: {key} batch {batch!r} is not an int >= 1")
        if not rate > 0:
            raise ProfileError(f"profile {name!r}: {key}[{batch}] = {rate!r} is not > 0")


def _rates_from_json(where: str, key: str, raw: Any) -> dict[int, float]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: {key} must be an object of batch -> rate")
    try:
        return {int(b): float(r) for b, r in raw.items()}
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: {key} must map batch sizes to numbers") from None
