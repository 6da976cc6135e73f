"""deployments/local-up.sh starts the Prefect server on 127.0.0.1 only: anyone who reaches the
API can start flows with any parameters, so it must not listen on other interfaces. Runs the
script with a stand-in `prefect` that records its arguments and serves /api/health where the
script told it to listen."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKE_PREFECT = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
if [ "$1 $2" = "server start" ]; then
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in --host) host=$2; shift 2;; --port) port=$2; shift 2;; *) shift;; esac
  done
  mkdir -p "$FAKE_WWW/api" && echo ok > "$FAKE_WWW/api/health"
  exec "$FAKE_PYTHON" -m http.server --bind "$host" --directory "$FAKE_WWW" "$port"
fi
exit 0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_local_up_binds_the_server_to_loopback_only(tmp_path: Path) -> None:
    fake = tmp_path / "prefect"
    fake.write_text(FAKE_PREFECT)
    fake.chmod(0o755)
    state = tmp_path / "state"
    log = tmp_path / "calls.log"
    port = free_port()
    env = {
        **os.environ,
        "PREFECT": str(fake),
        "BLEND_PREFECT_PORT": str(port),
        "BLEND_LOCAL_DIR": str(state),
        "FAKE_LOG": str(log),
        "FAKE_WWW": str(tmp_path / "www"),
        "FAKE_PYTHON": sys.executable,
        # a host setting in the environment must not widen what the server listens on
        "PREFECT_SERVER_API_HOST": "0.0.0.0",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "deployments" / "local-up.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        calls = log.read_text().splitlines()
        servers = [c for c in calls if c.startswith("server start")]
        assert servers == [f"server start --host 127.0.0.1 --port {port}"]
        assert f"http://127.0.0.1:{port}" in done.stdout
        assert "0.0.0.0" not in " ".join(calls)
    finally:
        pid_file = state / "server.pid"
        if pid_file.is_file():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
