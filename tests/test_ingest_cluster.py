"""A real 2-node Ray cluster on loopback (127.0.0.2, as MACHINE-NOTES shows): `python -m ingest
--ray-address` spreads its shard tasks over both nodes and writes a complete dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ingest.synthetic import MediaSpec, make_media
from ingest.testing import descendants, free_port, kill_all, processes_mentioning

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
NODE_IP = "127.0.0.2"


@pytest.fixture
def two_node_cluster():
    """Head and worker node, 1 CPU each, in a private temp folder; stopped by process id."""
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    port = free_port(NODE_IP)
    common = [
        "--node-ip-address",
        NODE_IP,
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(100 << 20),
        "--disable-usage-stats",
        "--temp-dir",
        temp,
    ]
    # `ray start --head` turns token authentication on; the other node and drivers must use it.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    started = []
    try:
        for args in (
            ["--head", "--port", str(port), "--include-dashboard", "false"],
            ["--address", f"{NODE_IP}:{port}"],
        ):
            done = subprocess.run(
                [RAY, "start", *args, *common],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            started = processes_mentioning(temp)
        yield f"{NODE_IP}:{port}", env
    finally:
        pids = processes_mentioning(temp) or started
        tree = [d for p in pids for d in descendants(p)]
        kill_all(pids + tree, 15)
        time.sleep(2)
        kill_all(processes_mentioning(temp) + tree, 9)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ingest_on_a_two_node_cluster(tmp_path, two_node_cluster):
    for i in range(6):
        make_media(tmp_path / "media" / f"v{i}.mp4", MediaSpec(seconds=12, width=160, height=120))
    table = tmp_path / "table.csv"
    table.write_text("path,caption\n" + "".join(f"media/v{i}.mp4,video {i}\n" for i in range(6)))
    out = tmp_path / "out"
    address, env = two_node_cluster
    cmd = [
        sys.executable,
        "-m",
        "ingest",
        "videos",
        str(table),
        "-o",
        str(out),
        "--items-per-shard",
        "1",
        "--ray-address",
        address,
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert summary["nodes"] == 2 and summary["cpus"] == 2
    assert summary["samples"] == 12 and summary["failures"] == 0 and summary["shards_written"] == 6
    index = json.loads((out / "index.json").read_text())
    assert index["total_samples"] == 12
