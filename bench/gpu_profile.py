"""Fit the GPU step model to bench/gpu_microbench.py's measured model steps.

    python bench/gpu_profile.py [bench/data/gpu_microbench_h200.json] [--peak-flops 989e12]
                                [--bandwidth 4.8e12] [--measured-bandwidth]

Prints the fit (blend/calibration/gpu_steps.py) with and without fixing the bandwidth
efficiency at the measured read bandwidth of the `hbm` section, the error per step, and the
same data fitted with one hard max over everything (the step model blend used before), so
the two can be compared; the h200 entry of blend/cost/specs/hardware.json holds the first fit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from blend.calibration.gpu_steps import fit_gpu_steps, load_model_steps

DEFAULT = Path(__file__).with_name("data") / "gpu_microbench_h200.json"


def measured_read_bandwidth(path: Path) -> float:
    """The best read-only bandwidth of the `hbm` section (bytes/s)."""
    points = json.loads(path.read_text())["sections"]["hbm"]["points"]
    return max(p["bytes_per_s"] for p in points if p["op"] == "read_sum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--peak-flops", type=float, default=989e12, help="dense bf16 FLOP/s")
    parser.add_argument("--bandwidth", type=float, default=4.8e12, help="HBM bytes/s")
    args = parser.parse_args()
    steps = load_model_steps(args.path)
    read = measured_read_bandwidth(args.path)
    fixed = fit_gpu_steps(
        steps, args.peak_flops, args.bandwidth, bandwidth_efficiency=read / args.bandwidth
    )
    free = fit_gpu_steps(steps, args.peak_flops, args.bandwidth)
    print(f"{len(steps)} steps from {args.path}; measured read bandwidth {read / 1e12:.2f} TB/s")
    for label, fit in (("bandwidth fixed at the measured read", fixed), ("all free", free)):
        print(
            f"{label}: overhead {fit.overhead_s * 1e3:.2f} ms, GEMMs {fit.flops_efficiency:.3f} "
            f"of peak, attention {fit.attention_flops_efficiency:.3f}, bandwidth "
            f"{fit.bandwidth_efficiency:.3f}, knee k {fit.roofline_sharpness:.2f}: relative "
            f"error rms {fit.rms_relative_error:.1%}, max {fit.max_relative_error:.1%}"
        )
    predicted = fixed.predict(steps, args.peak_flops, args.bandwidth)
    for step, seconds in zip(steps, predicted, strict=True):
        print(
            f"  {step.label:32s} measured {step.seconds * 1e3:8.2f} ms  predicted "
            f"{seconds * 1e3:8.2f} ms  {seconds / step.seconds - 1:+6.1%}"
        )


if __name__ == "__main__":
    main()
