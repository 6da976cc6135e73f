"""How much of vLLM's, torch's and transformers' own output the command line lets through.

Quiet (the default of `blend`): only their errors. They otherwise print a score of warnings
and advice at engine start (Triton missing, NUMA binding, LD_PRELOAD, deprecations, a weight
loading bar) between blend's own lines. Verbose (`blend --verbose`): their warnings too.
Both must be chosen before vLLM, torch or transformers is imported: most of these settings
are read once, at import. A variable the user has set is left as it is.
"""

from __future__ import annotations

import logging
import os
import warnings

# Read at import by the library named; inherited by engine processes vLLM starts.
QUIET_ENV = {
    "VLLM_LOGGING_LEVEL": "ERROR",  # vLLM's logger (its weight-loading bar follows it)
    "TORCH_LOGS": "-torch",  # torch's Python loggers at ERROR ("-name": errors only)
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # warnings printed by torch's C++ (e.g. NUMA binding)
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' bars (e.g. writing the demo model)
    "PYTHONWARNINGS": "ignore",  # Python warnings in processes vLLM starts (this one: below)
}
# vLLM logs every engine step's detail at INFO; warnings are what --verbose is for.
VERBOSE_ENV = {"VLLM_LOGGING_LEVEL": "WARNING"}
THIRD_PARTY_LOGGERS = ("vllm", "torch", "transformers", "ray")  # ray: execute/ray_fleet.py


def configure(verbose: bool) -> None:
    """Set how much the third-party libraries may print for the rest of this process."""
    for name, value in (VERBOSE_ENV if verbose else QUIET_ENV).items():
        os.environ.setdefault(name, value)
    if verbose:
        return
    # Python warnings raised in this process by anything but blend itself.
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"blend(\.|$)")
    for name in THIRD_PARTY_LOGGERS:  # when already imported, or configured without env
        logging.getLogger(name).setLevel(logging.ERROR)
