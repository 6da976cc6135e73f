"""The CLI, the executor and the flows do not load numba; only simulating does (engine.py).

vLLM 0.32's engine start crashes in a process that imported numba before it
(blend/engines/vllm_compat.py shields against it); not loading numba where nothing simulates
also keeps the CLI's start-up short."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    """What a fresh interpreter prints for `code`."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_the_cli_and_flows_do_not_import_numba() -> None:
    code = (
        "import sys\n"
        "import blend.cli, blend.execute.stage, blend.simulate, blend.simulate.run\n"
        "import bench.workloads.generators\n"
        "import flows.pipeline\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))\n"
    )
    assert _python(code) == "[]"


def test_simulating_imports_numba() -> None:
    """The check above can fail: the simulator does load numba once it runs."""
    code = (
        "import sys\n"
        "from blend.simulate import SimRequest, simulate\n"
        "from bench.workloads.generators import default_cost\n"
        "simulate([SimRequest('a', [1, 2, 3], 2)], [0], default_cost())\n"
        "print('numba' in sys.modules)\n"
    )
    assert _python(code) == "True"
