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
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
def local_ray(
    num_cpus: int = 2, memory: int = 2 << 30, object_store_memory: int = 128 << 20
) -> Iterator[None]:
    """A private local Ray instance (usage stats and dashboard off) for the enclosed block."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        _memory=memory,
        object_store_memory=object_store_memory,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


def command_line(pid: int) -> str:
    """The command line of `pid`, or '' when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """Process ids of every live descendant of `pid` (Linux /proc)."""
    parents = {p: _parent(p) for p in (int(d) for d in os.listdir("/proc") if d.isdigit())}
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def processes_mentioning(text: str) -> list[int]:
    """Process ids whose command line contains `text` (e.g. a private Ray temp folder)."""
    pids = (int(d) for d in os.listdir("/proc") if d.isdigit())
    return [p for p in pids if p != os.getpid() and text in command_line(p)]


def kill_all(pids: list[int], sig: int = 9) -> None:
    """Send `sig` to each of `pids` (ones already gone are skipped)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
