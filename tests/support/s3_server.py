"""A real S3-compatible server on this machine for tests: moto's, in server mode, on a free
port, reached over HTTP by pyarrow (and by boto3 to set up buckets and objects).

    with s3_server() as server:            # once per module: it starts in about a second
        server.use(monkeypatch)            # per test: endpoint and dummy credentials in env
        server.put("bkt", "prompts.jsonl", data)

`use` empties the server first, so each test starts with no buckets. `deny_all` makes the
server check signatures from then on: the dummy credentials belong to no user, so every
request is refused (AccessDenied), as a bucket the credentials may not read refuses them.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class S3Server:
    host: str  # 127.0.0.1:PORT
    client: Any  # a boto3 S3 client

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}"

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An empty server, and the environment that points pyarrow at it (AWS_ENDPOINT_URL,
        dummy credentials, no profile or instance metadata to look up)."""
        self.allow_all()  # whatever an earlier test left
        self._moto_api("reset", b"")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_ENDPOINT_URL", self.endpoint)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """Upload `data` as bucket/key, making the bucket if needed."""
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            self.client.create_bucket(Bucket=bucket)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def deny_all(self) -> None:
        """From now on every request must be signed by a known user: none is."""
        self._moto_api("reset-auth", b"0")

    def allow_all(self) -> None:
        """Back to accepting any request (as after `use`)."""
        self._moto_api("reset-auth", b"inf")

    def _moto_api(self, action: str, body: bytes) -> None:
        request = urllib.request.Request(  # not a form: moto reads the raw body
            f"{self.endpoint}/moto-api/{action}",
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free local port, in a process of its own, stopped on exit.

    Not in this process (moto's ThreadedMotoServer): the server is a Flask app, and a test
    process that has imported Flask cannot start vLLM afterwards (vLLM's CPU platform walks
    every loaded module's globals, and Flask's `current_app` proxy raises on a look outside
    a request), so an engine test sharing the pytest worker would fail.
    """
    if importlib.util.find_spec("moto") is None:
        pytest.skip("the dev extra's moto[server] is not installed")
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, server)
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield S3Server(f"127.0.0.1:{port}", client)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(port: int, server: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Until the server answers HTTP on `port` (it starts in a second or two)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto's server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto's server did not answer on port {port} in {timeout_s:.0f} s")
