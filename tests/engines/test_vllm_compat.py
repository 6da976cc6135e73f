"""The numba / vLLM clash: vLLM's kernel scan must get through llvmlite's library proxy."""

from __future__ import annotations

import subprocess
import sys

SCAN = (
    "import sys\n"
    "bad = []\n"
    "for module in list(sys.modules.values()):\n"
    "    for name, value in list(getattr(module, '__dict__', {}).items()):\n"
    "        if hasattr(value, '__dict__'):\n"
    "            try:\n"
    "                vars(value).get('kernel')\n"  # what vLLM 0.32's scan does
    "            except AttributeError:\n"
    "                bad.append(module.__name__ + '.' + name)\n"
    "print(bad)\n"
)


def _scan(shield: bool) -> str:
    code = "import numba\n"
    if shield:
        code += (
            "from blend.engines.vllm_compat import shield_llvmlite_from_kernel_scan\n"
            "shield_llvmlite_from_kernel_scan()\n"
        )
    return subprocess.run(
        [sys.executable, "-c", code + SCAN], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_scan_trips_on_llvmlite_without_the_shield() -> None:
    assert _scan(shield=False) == "['llvmlite.binding.ffi.lib']"


def test_the_shield_lets_the_scan_through_and_numba_still_compiles() -> None:
    assert _scan(shield=True) == "[]"
    code = (
        "import numba\n"
        "from blend.engines.vllm_compat import shield_llvmlite_from_kernel_scan\n"
        "shield_llvmlite_from_kernel_scan()\n"
        "print(numba.njit(lambda x: x + 1)(2))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"
