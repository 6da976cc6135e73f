"""A local Prefect deployment as deployments/local-up.sh sets it up (server, work pool, `gpu`
limit, deployment, worker), and what end-to-end tests do with it: run the prefect CLI against
it, trigger a deployment, wait for the flow run to end."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect.client.orchestration import get_client

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class LocalPrefect:
    """A server, work pool, `gpu` limit, deployment and worker from deployments/local-up.sh."""

    url: str  # the UI
    api_url: str
    env: dict[str, str]  # environment for `prefect ...` commands against this server
    root: Path  # PREFECT_HOME, logs and pid files live under here

    def prefect(self, *args: str, timeout_s: float = 180) -> str:
        """Run the prefect CLI against this server; returns stdout (raises on failure)."""
        done = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def logs(self) -> str:
        parts = [(self.root / "state" / f"{n}.log") for n in ("worker", "server")]
        return "\n".join(p.read_text(errors="replace")[-6000:] for p in parts if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_prefect_up(root: Path) -> Iterator[LocalPrefect]:
    """deployments/local-up.sh on a free port with PREFECT_HOME under `root`; local-down.sh
    after."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick scheduled runs up within a second
        # A run that finds the deployment's slot (concurrency_limit: 1) still held is retried
        # after this many seconds (default 30): the second run of a test comes right after.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        "BLEND_PREFECT_PORT": str(port),
        "BLEND_LOCAL_DIR": str(root / "state"),
        "PREFECT": str(Path(sys.executable).with_name("prefect")),
        "VLLM_CONFIGURE_LOGGING": "0",
    }
    local = LocalPrefect(f"http://127.0.0.1:{port}", api_url, env, root)
    try:
        up = subprocess.run(
            ["bash", "deployments/local-up.sh"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert up.returncode == 0, f"local-up.sh failed:\n{up.stdout}{up.stderr}\n{local.logs()}"
        yield local
    finally:
        subprocess.run(
            ["bash", "deployments/local-down.sh"], env=env, cwd=REPO, timeout=120, check=False
        )


def trigger(local: LocalPrefect, deployment: str, params_json: str) -> str:
    """`prefect deployment run` with parameters; returns the new flow run's id."""
    out = local.prefect("deployment", "run", deployment, "--params", params_json)
    match = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert match, f"no flow run id in:\n{out}"
    return match.group(1)


def wait_final(local: LocalPrefect, flow_run_id: str, timeout_s: float = 300) -> str:
    """Poll the API until the flow run is final; returns the state type (COMPLETED, ...)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout_s
    with (
        temporary_settings({PREFECT_API_URL: local.api_url}),
        get_client(sync_client=True) as client,
    ):
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state.type.value
            time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} not final after {timeout_s} s\n{local.logs()}")
