"""Local stand-ins for the web and a cluster, for tests, benchmarks and demos of ingest.

`serve_directory` runs `python -m http.server` on 127.0.0.1 (the AudioSet URL template then
points at it); `local_ray` starts a small private Ray instance with explicit resources.
Both stop what they started, by process id or through Ray's own shutdown.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_directory(folder: str | os.PathLike, timeout: float = 20.0) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1; yield the base URL (no trailing slash)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"http.server for {folder} did not start on port {port}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def local_ray(num_cpus: int = 2, memory: int = 2 << 30, object_store_memory: int = 128 << 20) -> Iterator[None]:
    """A private local Ray instance (usage stats and dashboard off) for the enclosed block."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=num_cpus, _memory=memory, object_store_memory=object_store_memory,
             include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
