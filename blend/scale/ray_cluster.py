"""Which Ray a command uses, joined once per process, quiet unless the command line is verbose.

Shared by the multi-engine run (blend/execute/ray_fleet.py) and the profile's tokenization on
Ray (blend/profile/ray_tokenize.py), so both reach the same cluster by the same rule.
"""

from __future__ import annotations

import logging
import os
from typing import Any

RAY_NAMESPACE = "blend"


def connect_ray(address: str | None) -> tuple[Any, bool]:
    """Ray, connected: the one this process already started, else the cluster at `address`,
    else at $RAY_ADDRESS, else a new local cluster of this machine; and whether it is that
    new local cluster (which can never grow)."""
    # Quiet unless the command line is verbose (blend/cli/verbosity.py sets the "ray" logger
    # to ERROR; read before Ray is imported, which sets it to INFO): Ray's own start-up lines
    # and the actors' output (vLLM's weight-loading bars, in colour) would print between
    # blend's lines and after its summary. An actor's failure still reaches the driver, as
    # the exception of the call that hit it.
    quiet = not logging.getLogger("ray").isEnabledFor(logging.WARNING)
    import ray

    if ray.is_initialized():
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(
        address=address,
        namespace=RAY_NAMESPACE,
        ignore_reinit_error=True,
        log_to_driver=not quiet,
        logging_level=logging.ERROR if quiet else logging.INFO,
    )
    return ray, address is None
