"""Write a fitted CPU step model into a hardware table (blend/cost/specs/hardware.json's shape)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from blend.calibration.cpu_fit import Fit
from blend.cost.model import SPECS_DIR

HARDWARE_JSON = SPECS_DIR / "hardware.json"
_DEFAULT_ENTRY = {"mem_bytes": 1073741824, "memory_utilization": 1.0}  # 1 GiB of CPU KV


def _fitted_fields(fit: Fit, source: str) -> dict[str, Any]:
    return {
        "peak_flops": fit.flops,
        "mem_bandwidth_bytes_s": fit.bandwidth,
        "flops_efficiency": 1.0,
        "bandwidth_efficiency": 1.0,
        "step_overhead_s": fit.step_overhead_s,
        "overlap_compute_memory": fit.overlap,
        "source": source,
    }


def write_profile(path: Path, fit: Fit, source: str, name: str = "cpu-local") -> None:
    """Set entry `name` of a hardware table, atomically; the rest of the file's text stays as
    it is (a new file holds only this entry)."""
    text = path.read_text() if path.is_file() else "{\n}\n"
    table = json.loads(text)
    entry = dict(table.get(name, _DEFAULT_ENTRY))
    entry.update(_fitted_fields(fit, source))
    block = _format_entry(name, entry)
    pattern = rf"^  {re.escape(json.dumps(name))}: \{{.*?^  \}}"
    match = re.search(pattern, text, flags=re.MULTILINE | re.DOTALL)
    if match:
        text = text[: match.start()] + block + text[match.end() :]
    else:
        body = text.rstrip().removesuffix("}").rstrip()
        text = body + (",\n" if body != "{" else "\n") + block + "\n}\n"
    json.loads(text)  # still valid JSON
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_flat_profile(path: Path, fit: Fit, source: str, name: str) -> None:
    """A stand-alone hardware JSON (load_hardware(path) reads it), like cpu-local otherwise."""
    table = json.loads(HARDWARE_JSON.read_text())
    entry = {"name": name, **table["cpu-local"], **_fitted_fields(fit, source)}
    path.write_text(json.dumps(entry, indent=2) + "\n")


def _format_entry(name: str, entry: dict[str, Any]) -> str:
    """One entry as the hand-written file lays it out: fields on wrapped lines."""
    items = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in entry.items()]
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 > 92:
            lines.append(line + ",")
            line = item
        else:
            line = f"{line}, {item}" if line else item
    lines.append(line)
    body = "\n    ".join(lines)
    return f"  {json.dumps(name)}: {{\n    {body}\n  }}"
