"""Engine start time of the vLLM CPU build on the tiny demo model, in-process vs multiprocess.

Each start runs in a fresh subprocess (vLLM keeps process-wide state), side by side in one run:
    python bench/engine_start.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
from blend.engines.base import EngineConfig
from blend.engines.vllm_engine import VllmEngine
if __name__ == "__main__":
    started = time.perf_counter()
    config = EngineConfig(model_dir=Path(sys.argv[1]), multiprocessing=sys.argv[2] == "1")
    engine = VllmEngine(config)
    seconds = time.perf_counter() - started
    engine.close()
    print("RESULT " + json.dumps({"start_s": seconds}))
"""


def start_seconds(model_dir: Path, multiprocessing: bool) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), "1" if multiprocessing else "0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return float(json.loads(line.removeprefix("RESULT "))["start_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from blend.demo.model import ensure_tiny_model

    model_dir = ensure_tiny_model(Path(tempfile.gettempdir()) / "blend-bench-models")
    for repeat in range(args.repeats):
        inproc = start_seconds(model_dir, multiprocessing=False)
        multi = start_seconds(model_dir, multiprocessing=True)
        print(
            f"repeat {repeat}: in-process {inproc:.1f} s, multiprocess {multi:.1f} s, "
            f"ratio {multi / inproc:.2f}x"
        )


if __name__ == "__main__":
    main()
