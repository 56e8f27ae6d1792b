"""Ray distribution: one task per output shard, resumable, with progress and a run report.

The planned items are cut into shards deterministically (`ingest.items.assign_shards`). A shard
whose stats record (its success marker) exists is skipped, so rerunning the same command after
a crash or a `kill -9` (of the driver or of a worker) finishes the dataset without duplicates:
shards are published atomically by `shards.writer.ShardWriter`, and a task that died is re-run
by Ray (`task_retries`). `retry_failed` re-opens finished shards that recorded failures and
redoes only those inputs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from tqdm.auto import tqdm

from ingest.config import JobOptions, RayOptions
from ingest.items import WorkItem, assign_shards, fingerprint
from ingest.report import SUMMARY_NAME, RunSummary, summarize, summary_json
from ingest.worker import write_shard
from shards import storage
from shards.index import build_index
from shards.writer import stats_name

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Use the caller's Ray session if there is one, else join `address` or start a local one."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if options.address:
        ray.init(address=options.address, log_to_driver=True)
    else:
        ray.init(
            address="local",  # never join a stale cluster found on this machine
            num_cpus=options.num_cpus or os.cpu_count(),
            object_store_memory=options.object_store_memory,
            _memory=options.memory,
            _temp_dir=options.temp_dir,
            include_dashboard=False,
        )
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0)
class _Progress:
    """Counts finished inputs, samples and failures as shard tasks report them."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]

    def add(self, samples: int, failures: int) -> None:
        self.counts[0] += 1
        self.counts[1] += samples
        self.counts[2] += failures

    def totals(self) -> list[int]:
        return self.counts


def _shard_task(shard_id: int, items: list[WorkItem], job: JobOptions, previous, progress) -> dict:
    result = write_shard(shard_id, items, job, previous, lambda s, f: progress.add.remote(s, f))
    return {**result, "node": ray.get_runtime_context().get_node_id()}


_remote_shard_task = ray.remote(_shard_task)


def _read_stats(output: str, shard_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stats records of the shards among `shard_ids` that are done."""
    names = (
        set(storage.listdir(output)) if storage.is_s3(output) or os.path.isdir(output) else set()
    )
    done = [i for i in shard_ids if stats_name(i) in names]

    def read(shard_id: int) -> dict[str, Any]:
        url = storage.join(output, stats_name(shard_id))
        try:
            return json.loads(storage.read_bytes(url))
        except ValueError as e:
            raise ValueError(
                f"stats record {url} is not valid JSON ({e}); delete it to redo the shard"
            ) from e

    with ThreadPoolExecutor(16) as pool:
        return dict(zip(done, pool.map(read, done)))


def _check_same_inputs(output: str, shard_id: int, items: Sequence[WorkItem], stats: dict) -> None:
    made_from = stats.get("ingest", {}).get("items_sha256")
    if made_from is not None and made_from != fingerprint(items):
        raise ValueError(
            f"shard {shard_id} in {output} was made from other inputs than this run plans for it "
            "(did the input table or the sharding options change?); write to a new output"
        )


def run_job(items: Sequence[WorkItem], job: JobOptions) -> RunSummary:
    """Write every shard of `items` to `job.output`; return the run summary (also saved there)."""
    shards = assign_shards(items, job.items_per_shard)
    stats = _read_stats(job.output, range(len(shards)))
    for shard_id, record in stats.items():
        _check_same_inputs(job.output, shard_id, shards[shard_id], record)
    previous: dict[int, dict | None] = {i: None for i in range(len(shards)) if i not in stats}
    if job.retry_failed:
        previous.update({i: s for i, s in stats.items() if s.get("failures")})
    todo = sorted(previous)
    print(
        f"ingest: {len(items)} inputs in {len(shards)} shards -> {job.output} "
        f"({len(shards) - len(todo)} shards done, {len(todo)} to write)",
        flush=True,
    )

    results: list[dict] = []
    errors: dict[int, str] = {}
    cpus = seconds = 0.0
    if todo:  # a finished dataset needs no Ray at all
        with ray_session(job.ray):
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            started = time.time()  # throughput leaves out Ray's start-up
            results, errors = _run_tasks(shards, todo, previous, job, cpus)
            seconds = time.time() - started

    if storage.is_s3(job.output) or os.path.isdir(job.output):
        build_index(job.output)
    final = _read_stats(job.output, range(len(shards)))
    summary = summarize(
        job.output,
        final.values(),
        len(shards),
        len(shards) - len(todo),
        results,
        errors,
        seconds,
        cpus,
    )
    storage.write_bytes(storage.join(job.output, SUMMARY_NAME), summary_json(summary))
    return summary


def _run_tasks(
    shards, todo, previous, job: JobOptions, cpus: float
) -> tuple[list[dict], dict[int, str]]:
    opts: dict[str, Any] = {
        "num_cpus": job.ray.task_cpus,
        "max_retries": job.ray.task_retries,
        "retry_exceptions": True,
    }
    if job.ray.task_memory:
        opts["memory"] = job.ray.task_memory
    concurrency = job.ray.concurrency or max(1, int(cpus // job.ray.task_cpus))
    progress = _Progress.remote()
    job_ref = ray.put(job)
    queue = list(todo)
    pending: dict[Any, int] = {}
    results: list[dict] = []
    errors: dict[int, str] = {}
    quiet = not job.progress
    with (
        tqdm(total=len(todo), desc="shards", unit="shard", disable=quiet) as shard_bar,
        tqdm(desc="clips", unit="clip", disable=quiet) as clip_bar,
    ):
        while queue or pending:
            while queue and len(pending) < concurrency:
                shard_id = queue.pop(0)
                ref = _remote_shard_task.options(name=f"shard-{shard_id:06d}", **opts).remote(
                    shard_id, shards[shard_id], job_ref, previous[shard_id], progress
                )
                pending[ref] = shard_id
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                shard_id = pending.pop(ref)
                try:
                    results.append(ray.get(ref))
                except ray.exceptions.RayError as e:  # failed on every retry (storage down, ...)
                    errors[shard_id] = f"{type(e).__name__}: {e}"
                    log.error("shard %d failed: %s", shard_id, e)
                shard_bar.update(1)
            _, samples, failures = ray.get(progress.totals.remote())
            clip_bar.update(samples - clip_bar.n)
            clip_bar.set_postfix(failed=failures, refresh=False)
    ray.kill(progress)
    return results, errors
