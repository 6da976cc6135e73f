"""Ray stays quiet under a quiet command line: no start-up lines, no actor output (vLLM's
loading bars) between blend's lines or after its summary; --verbose lets them through."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from blend.cli.verbosity import configure
configure(verbose=sys.argv[1] == "verbose")
from blend.scale.ray_cluster import connect_ray
ray, _ = connect_ray(None)

@ray.remote(num_cpus=0)
class Talker:
    def say(self):
        print("ACTOR-SAYS-HELLO", flush=True)
        return 1

talker = Talker.remote()
assert ray.get(talker.say.remote()) == 1
import time; time.sleep(1.5)  # the driver's log monitor forwards actor output within ~0.5 s
ray.shutdown()
"""


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_ray_prints_only_when_verbose(mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},  # a new local cluster
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    if mode == "quiet":
        assert "ACTOR-SAYS-HELLO" not in printed
        assert "Started a local Ray instance" not in printed
    else:
        assert "ACTOR-SAYS-HELLO" in printed
