"""Simulator speed: wall seconds of blend.simulate on three large workloads in FCFS order.

    python bench/simulator_speed.py                      # all three workloads, full size
    python bench/simulator_speed.py --only openvid --scale 0.1
    python bench/simulator_speed.py --cold               # compile into an empty numba cache

Workloads (llama-3.1-8b on a100-80g, the default engine SimConfig()):
  openvid  40k OpenVid requests (~121-token prompts, ~16k-token outputs): the KV cache fills
           and preemptions dominate (the target: under 30 s on a 2-core machine)
  mix      blend_mix(1.4, 0.35, 40k) in its given order
  short    100k prompts of ~500 tokens made as bench/planners.py plan_1m makes them (25% of
           them under 200 shared 300-token prefixes), outputs ~32 tokens (lognormal, 1-512)
Prints the compile time first: the first simulate call of the process, on a tiny workload
(numba compiles the step loop, or loads it from its cache: --cold times a real compile).
Then per workload: wall seconds of simulate (workload generation excluded), steps,
preemptions, and the 1-minute load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKLOADS = ("openvid", "mix", "short")


def short_requests(n: int, mean_tokens: int = 500, seed: int = 0) -> list:
    """n prompts of ~mean_tokens tokens as plan_1m makes them; outputs ~32 tokens."""
    from bench.workloads.generators import few_shot_prompts
    from blend.simulate import SimRequest

    prompts, rng = few_shot_prompts(n, mean_tokens, seed)
    outputs = np.clip(np.rint(rng.lognormal(np.log(32) - 0.32, 0.8, n)), 1, 512).astype(int)
    return [SimRequest(f"s{i}", prompt, int(outputs[i])) for i, prompt in enumerate(prompts)]


def make_workload(name: str, scale: float) -> list:
    from bench.workloads.generators import OPENVID, blend_mix

    if name == "openvid":
        return OPENVID.generate(round(40_000 * scale), 0)
    if name == "mix":
        return blend_mix(1.4, 0.35, round(40_000 * scale), 0)
    return short_requests(round(100_000 * scale))


def time_compile() -> float:
    """Seconds of the process's first simulate call, on two tiny requests."""
    from bench.workloads.generators import default_cost
    from blend.simulate import SimConfig, SimRequest, simulate

    tiny = [SimRequest("a", (1, 2, 3, 4, 5), 3), SimRequest("b", (1, 2, 3, 4, 6), 2)]
    started = time.perf_counter()
    simulate(tiny, [0, 1], default_cost(), SimConfig(block_size=4))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size x the default")
    parser.add_argument("--cold", action="store_true", help="compile into an empty numba cache")
    args = parser.parse_args()
    if args.cold:  # numba reads it on import, so before anything imports blend.simulate
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cache-")
    from bench.workloads.generators import default_cost
    from blend.simulate import SimConfig, simulate

    print(f"compile (first call, {'cold' if args.cold else 'cached'}): {time_compile():.2f} s")
    cost = default_cost()
    for name in args.only.split(","):
        requests = make_workload(name, args.scale)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        result = simulate(requests, list(range(len(requests))), cost, SimConfig())
        seconds = time.perf_counter() - started
        print(
            f"{name}: {len(requests):,} requests, {seconds:.1f} s wall, {result.n_steps:,} steps, "
            f"{result.n_preemptions:,} preemptions (load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after)",
            flush=True,
        )


if __name__ == "__main__":
    main()
