"""Workarounds for vLLM bugs that blend's users would otherwise hit."""

from __future__ import annotations

import sys


def shield_llvmlite_from_kernel_scan() -> None:
    """Let a vLLM engine start in a process that has imported numba (the simulator does).

    vLLM 0.32 starts an engine by scanning every module attribute for Triton kernels to
    override, calling vars(value).get("kernel") on each object that has a __dict__.
    llvmlite's `ffi.lib` proxy answers any attribute, __dict__ included, with a wrapped C
    function, so the scan raises AttributeError and the engine never starts. Giving the proxy
    a real (empty) __dict__ entry in its function table makes it look like a plain object.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    if ffi is not None:
        ffi.lib._fntab.setdefault("__dict__", {})
