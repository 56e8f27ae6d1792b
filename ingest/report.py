"""Run report: dataset-wide counts from the shards' stats records, failures by reason, the most
frequent errors, and this run's throughput."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SUMMARY_NAME = "ingest_summary.json"

_LOCATION = re.compile(r"\S*[/\\]\S*")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def reason_code(failure: str) -> str:
    """`"truncated: x.mp4: ..."` -> `"truncated"`."""
    return failure.split(":", 1)[0].strip() or "unknown"


def error_pattern(failure: str) -> str:
    """A failure with its paths, URLs and numbers blanked, so that alike errors group together."""
    return _NUMBER.sub("#", _LOCATION.sub("<path>", failure))


@dataclass
class RunSummary:
    """What a run did and what the dataset at `output` now holds."""

    output: str
    shards_total: int
    shards_skipped: int  # already done before this run
    shards_written: int  # by this run
    shard_errors: dict[int, str] = field(default_factory=dict)  # tasks that failed every retry
    samples: int = 0  # in the whole dataset
    failures: int = 0  # in the whole dataset
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    top_errors: list[dict[str, Any]] = field(default_factory=list)
    new_samples: int = 0  # written by this run
    new_failures: int = 0
    nodes: int = 0  # Ray nodes that wrote shards in this run
    seconds: float = 0.0
    cpus: float = 0.0
    clips_per_second: float = 0.0
    clips_per_second_per_core: float = 0.0

    @property
    def complete(self) -> bool:
        return (
            not self.shard_errors and self.shards_skipped + self.shards_written == self.shards_total
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shard_errors": {str(k): v for k, v in self.shard_errors.items()}}

    def format(self) -> str:
        lines = [
            f"output: {self.output}",
            (
                f"shards: {self.shards_total} planned, {self.shards_skipped} already done, "
                f"{self.shards_written} written now, {len(self.shard_errors)} failed"
            ),
            (
                f"samples: {self.samples} in the dataset ({self.new_samples} new); "
                f"failed inputs/clips: {self.failures} ({self.new_failures} new)"
            ),
        ]
        if self.failures_by_reason:
            reasons = ", ".join(f"{r} {n}" for r, n in self.failures_by_reason.items())
            lines.append(f"failures by reason: {reasons}")
        for err in self.top_errors[:5]:
            lines.append(f"  {err['count']:>6} x {err['example'][:160]}")
        for shard_id, error in sorted(self.shard_errors.items())[:5]:
            lines.append(f"shard {shard_id} failed: {error[:300]}")
        lines.append(
            f"throughput: {self.clips_per_second:.2f} clips/s in {self.seconds:.1f} s on "
            f"{self.cpus:g} CPUs ({self.nodes} nodes) = "
            f"{self.clips_per_second_per_core:.2f} clips/s per core"
        )
        return "\n".join(lines)


def summarize(
    output: str,
    stats_records: Iterable[Mapping[str, Any]],
    shards_total: int,
    shards_skipped: int,
    results: Iterable[Mapping[str, Any]],
    shard_errors: Mapping[int, str],
    seconds: float,
    cpus: float,
    top: int = 10,
) -> RunSummary:
    """Fold the dataset's stats records and this run's shard results into a `RunSummary`."""
    reasons: Counter[str] = Counter()
    patterns: Counter[str] = Counter()
    examples: dict[str, str] = {}
    samples = failures = 0
    for stats in stats_records:
        samples += int(stats.get("num_samples", 0))
        for failure in stats.get("failures", []):
            failures += 1
            reasons[reason_code(failure["reason"])] += 1
            pattern = error_pattern(failure["reason"])
            patterns[pattern] += 1
            examples.setdefault(pattern, f"{failure['key']}: {failure['reason']}")
    results = list(results)
    new_samples = sum(r["new_samples"] for r in results)
    rate = new_samples / seconds if seconds > 0 else 0.0
    return RunSummary(
        output=output,
        shards_total=shards_total,
        shards_skipped=shards_skipped,
        shards_written=len(results),
        shard_errors=dict(shard_errors),
        samples=samples,
        failures=failures,
        failures_by_reason=dict(reasons.most_common()),
        top_errors=[
            {"count": n, "pattern": p, "example": examples[p]} for p, n in patterns.most_common(top)
        ],
        new_samples=new_samples,
        new_failures=sum(r["new_failures"] for r in results),
        nodes=len({r["node"] for r in results if r.get("node")}),
        seconds=seconds,
        cpus=cpus,
        clips_per_second=rate,
        clips_per_second_per_core=rate / cpus if cpus else 0.0,
    )


def summary_json(summary: RunSummary) -> bytes:
    return json.dumps(summary.to_dict(), indent=1).encode("utf-8")
