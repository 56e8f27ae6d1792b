"""Kill and rerun: `python -m ingest videos` with its own local Ray; a shard worker and then the
whole job are killed with SIGKILL mid-run; the same command then completes the dataset, and it
is byte for byte the dataset of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from ingest.synthetic import MediaSpec, make_media
from ingest.testing import command_line, descendants, kill_all, processes_mentioning
from shards.writer import shard_name, stats_name

NUM_INPUTS = 10


@pytest.fixture
def ray_tmp():
    """A short private Ray temp folder (Ray's socket paths must stay short); its processes die."""
    folder = tempfile.mkdtemp(prefix="rk", dir="/tmp")
    try:
        yield folder
    finally:
        kill_all(processes_mentioning(folder))
        shutil.rmtree(folder, ignore_errors=True)


def _command(table, out, ray_tmp) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ingest",
        "videos",
        str(table),
        "-o",
        str(out),
        "--items-per-shard",
        "1",
        "--num-cpus",
        "2",
        "--memory",
        "2G",
        "--object-store-memory",
        "128M",
        "--ray-temp-dir",
        ray_tmp,
        "--frames-per-clip",
        "2",
        "--short-side",
        "96",
        "--no-progress",
    ]


def _done(out) -> int:
    return sum(1 for i in range(NUM_INPUTS) if (out / stats_name(i)).exists())


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _shard_hashes(out) -> dict[str, str]:
    return {
        name: json.loads((out / name).read_text())["sha256"]
        for name in sorted(os.listdir(out))
        if name.endswith(".stats.json")
    }


@pytest.mark.slow
def test_kill_worker_and_driver_then_rerun(tmp_path, ray_tmp):
    for i in range(NUM_INPUTS):
        make_media(tmp_path / "media" / f"v{i}.mp4", MediaSpec(seconds=24, width=320, height=240))
    table = tmp_path / "table.csv"
    table.write_text("path\n" + "".join(f"media/v{i}.mp4\n" for i in range(NUM_INPUTS)))
    out = tmp_path / "out"

    job = subprocess.Popen(
        _command(table, out, ray_tmp),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _done(out) >= 1, 120, "the first shard")
        workers = [p for p in descendants(job.pid) if command_line(p).startswith("ray::shard-")]
        assert workers, "a shard task should be running"
        kill_all(workers[:1])  # a worker dies mid-shard: Ray re-runs its task
        _wait(lambda: _done(out) >= 3, 120, "three shards")
        tree = descendants(job.pid)
        os.killpg(job.pid, signal.SIGKILL)  # the driver and its local Ray die at once
        kill_all(tree)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    done_at_kill = _done(out)
    assert 3 <= done_at_kill < NUM_INPUTS, "the kill should land mid-run"
    # No torn shard is visible: every published tar has its stats record and matches it.
    for name in os.listdir(out):
        if name.endswith(".tar") and not name.startswith("."):
            assert (out / name.replace(".tar", ".stats.json")).exists(), name

    rerun = subprocess.run(
        _command(table, out, ray_tmp), capture_output=True, text=True, timeout=600, check=False
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{done_at_kill} shards done" in rerun.stdout
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert summary["shards_skipped"] == done_at_kill and summary["samples"] == 3 * NUM_INPUTS
    assert summary["failures"] == 0

    reference = tmp_path / "reference"
    clean = subprocess.run(
        _command(table, reference, ray_tmp),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert _shard_hashes(out) == _shard_hashes(reference)
    for i in range(NUM_INPUTS):
        assert (out / shard_name(i)).read_bytes() == (reference / shard_name(i)).read_bytes()
    assert not [n for n in os.listdir(out) if ".tmp-" in n], (
        "temporaries of killed writers are gone"
    )


def test_a_shard_that_fails_every_retry_is_reported_and_the_rest_are_written(tmp_path, ray_tmp):
    """A shard task that raises on every try (here: its tar cannot be published, a folder holds
    the name) is named in the summary with its error; the other shards are written and the job
    exits 1, so a rerun after fixing the cause completes the dataset."""
    for i in range(3):
        make_media(tmp_path / "media" / f"v{i}.mp4", MediaSpec(seconds=2, width=160, height=120))
    table = tmp_path / "table.csv"
    table.write_text("path\n" + "".join(f"media/v{i}.mp4\n" for i in range(3)))
    out = tmp_path / "out"
    (out / shard_name(1) / "blocker").mkdir(parents=True)

    command = [*_command(table, out, ray_tmp), "--task-retries", "1"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 1, run.stderr[-3000:]
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert list(summary["shard_errors"]) == ["1"]
    assert shard_name(1) in summary["shard_errors"]["1"]
    assert "shard 1 failed" in run.stdout
    assert (out / shard_name(0)).is_file() and (out / shard_name(2)).is_file()

    shutil.rmtree(out / shard_name(1))
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 shards done, 1 to write" in rerun.stdout
