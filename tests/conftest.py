"""Shared test settings: no traffic leaves this machine, and runs are deterministic."""

import os

# Set before any test imports transformers or ray: hub look-ups fail at once instead of retrying,
# and no tool reports usage anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --- Local S3 server (shards engineer) -------------------------------------------------------
import uuid as _uuid
from dataclasses import dataclass as _dataclass

import pytest as _pytest


@_dataclass(frozen=True)
class S3TestServer:
    """Settings of the session's local S3 server (SeaweedFS on 127.0.0.1)."""

    endpoint: str
    env: dict
    bucket: str
    pid: int

    def url(self, prefix: str = "") -> str:
        """``s3://{bucket}/{prefix}``."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def fresh_url(self, name: str = "t") -> str:
        """A URL under a new unique prefix, so tests never see each other's objects."""
        return self.url(f"{name}-{_uuid.uuid4().hex[:8]}")


@_pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server for the session: SeaweedFS on 127.0.0.1 (telemetry off), started once.

    While it runs, the standard AWS_* variables point at it (subprocesses inherit them), and the
    bucket ``test`` exists. Stopped by its process id at the end; the variables are restored.
    """
    from shards.local_s3 import LocalS3Server

    server = LocalS3Server(workdir=str(tmp_path_factory.mktemp("local-s3")))
    server.start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        server.create_bucket("test")
        yield S3TestServer(endpoint=server.endpoint, env=dict(server.env), bucket="test",
                           pid=server.process.pid)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@_pytest.fixture(params=["local", "s3"])
def storage_root(request, tmp_path):
    """A fresh dataset root, once as a local folder and once as an ``s3://`` prefix on the
    session's local S3 server: tests that take it run against both."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_server").fresh_url("root")
