"""The main job on the embedded default: raw toy-world video -> shards -> training -> heatmaps.

Runs the real pipeline, every stage a subprocess of the project's own commands (argument lists,
no shell): generate a toy world (``python -m ingest.toyworld``) -> serve its videos with
``python -m http.server`` on 127.0.0.1 -> ``python -m ingest audioset`` (yt-dlp over HTTP) and
``python -m ingest placesaudio`` on a local Ray instance into shards (a local folder, or
``--store s3://bucket/prefix`` with S3 settings from the AWS environment variables) ->
``python -m evaluation pool`` (retrieval pools in which no clip names a subset of what another
names) -> ``accelerate launch
trainer/main.py`` (two heads, AudioSet/PlacesAudio 50/50, splicing, phase 1 then 2) ->
``python -m evaluation`` (speech/sound-prompted segmentation, retrieval, disentanglement, and the
Table 4 ablation with ``--ablation``) -> ``python -m evaluation.predict`` pictures -> a report
(``report.md`` + ``report.json``) that sets every metric beside the learning bar.

Rerunning the same command resumes: a stage whose output is complete is skipped (the world's
manifest, each dataset's ingest summary and success markers, the retrieval pools' indexes, the
exported model; training itself continues from its latest checkpoint with ``--resume latest``,
and each evaluation report that exists is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation.report import markdown_table
from shards import storage
from shards.index import INDEX_NAME

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11; the project supports 3.10

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
ACCELERATE = str(Path(PY).with_name("accelerate"))

# The two kinds of audio the world holds: spoken captions and object sounds. Every per-kind output
# (prompt set, segmentation and retrieval report, picture) is named by one of them.
KINDS = ("speech", "sound")
# What the report takes from each segmentation report's summary: a report lacking one was written
# by an earlier evaluation, and the evaluate stage measures it again.
SEGMENTATION_FIGURES = ("mAP", "mIoU", "chance_mAP", "pointing")

# The learning bar (metric key in the report -> minimum).
BAR: dict[str, float] = {
    "speech_mAP": 0.80,
    "sound_mAP": 0.70,
    "speech_retrieval_a2v_R@1": 0.80,
    "speech_retrieval_v2a_R@1": 0.80,
    "sound_retrieval_a2v_R@1": 0.80,
    "sound_retrieval_v2a_R@1": 0.80,
    "PredDis": 0.95,
    "ActDis": 0.85,
    "ablation_speech_mAP_gap": 0.15,
}


@dataclass(frozen=True)
class Preset:
    """Sizes of one demo run: the world, the training budget and the evaluation."""

    name: str
    world: str  # a key of WORLDS; presets naming the same world share it and its shards
    config: str  # trainer YAML, relative to the repository
    train_args: tuple[str, ...] = ()  # extra trainer overrides
    pool: int = 100  # retrieval pool size (N-way)
    dis_clips: int = 200  # clips per dataset for disentanglement
    ablation_aggregations: str = "multihead,avgpool,cls"
    description: str = ""


# Toy worlds (extra `python -m ingest.toyworld` arguments). The demo world holds enough held-out
# clips for 100-way retrieval pools in which no clip names a subset of what another names (600
# captions give 123 such three-object captions, 200 sound retrieval videos ~130 distinct object
# triples); the held-out sets grow without changing the training corpora or the prompted
# segmentation sets.
WORLDS: dict[str, tuple[str, ...]] = {
    "smoke": ("--size", "small", "--speech-train", "240", "--speech-val", "60",
              "--videos", "24", "--eval-videos", "12", "--retrieval-videos", "60",
              "--eval-per-class", "4"),
    "demo": ("--size", "small", "--speech-train", "1000", "--speech-val", "600",
             "--videos", "100", "--eval-videos", "260", "--retrieval-videos", "200",
             "--eval-per-class", "20"),
}
# The demo world with corpora that cover different classes, as the paper's overlap little: of 20
# classes, ten are only named (captions, stills) and ten only heard (videos). Ten classes give
# C(10, 3) = 120 triples that can be told apart; 1200 held-out captions and 320 retrieval videos
# hold more than 100 of them each.
WORLDS["split"] = WORLDS["demo"] + (
    "--num-classes", "20", "--speech-val", "1200", "--retrieval-videos", "320",
    "--speech-classes", "ball", "box", "fish", "car", "cloud", "kite", "moon", "boat", "house",
    "cup",
    "--sound-classes", "star", "heart", "tree", "bee", "clock", "phone", "drum", "frog", "horn",
    "train",
)
# The split world with three times the training captions: each caption heard a third as often,
# which raised speech V->A retrieval past its bar (docs/demo-experiments.md, thirty-third round).
WORLDS["split3k"] = WORLDS["split"] + ("--speech-train", "3000")

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        world="smoke",
        config="configs/toy_demo.yaml",
        train_args=("--steps", "300", "--warmup_aligner_steps", "20", "--optim.warmup_steps", "20",
                    "--checkpoint.every", "100"),
        pool=40,
        dis_clips=40,
        description="about 15 minutes from scratch; for the end-to-end test",
    ),
    "default": Preset(
        name="default",
        world="demo",
        config="configs/toy_demo.yaml",
        train_args=("--steps", "1200"),
        description="about 18 minutes on 2 cores from scratch",
    ),
    "long": Preset(
        name="long",
        world="demo",
        config="configs/toy_demo.yaml",
        train_args=("--steps", "3000"),
        description="30-40 minutes on 2 cores from scratch (53 beside another training)",
    ),
}
# The long run with 128-d features for 4000 steps: speech retrieval rises to its bar (with
# training seed 1), sound mAP falls below its (docs/demo-experiments.md, twenty-third round).
PRESETS["retrieval"] = replace(PRESETS["long"], name="retrieval",
                               train_args=("--steps", "4000", "--model.feature_dim", "128"),
                               description="the long run with 128-d features for 4000 steps "
                                           "(46 minutes of training beside another run): speech "
                                           "retrieval, at a cost in sound mAP")
# The retrieval run exporting a moving average of its weights from step 300 (the decay and start a
# validation world chose for the long run): sound mAP 0.03-0.10 higher than without it, above its
# bar on three training seeds of five, at a cost in speech retrieval. Averaging only from step
# 2000 kept speech retrieval on one seed and lost the sound bar on two (docs/demo-experiments.md,
# twenty-fourth to twenty-seventh rounds).
PRESETS["segmentation"] = replace(
    PRESETS["retrieval"], name="segmentation",
    train_args=(*PRESETS["retrieval"].train_args,
                "--optim.ema_decay", "0.9995", "--optim.ema_start", "300"),
    description="the retrieval run exporting a moving average of its weights (41-47 minutes of "
                "training beside another run): both segmentation bars with training seed 2, at a "
                "cost in speech retrieval")
# The default and long runs on the world whose corpora cover different classes.
PRESETS["split"] = replace(PRESETS["default"], name="split", world="split",
                           description="the default run on a world whose corpora name and "
                                       "sound different classes")
PRESETS["split-long"] = replace(PRESETS["long"], name="split-long", world="split",
                                description="the long run on that world, where the heads "
                                            "divide by kind (both disentanglement bars with "
                                            "training seed 1; on an AMD EPYC both "
                                            "segmentation bars too)")

# The learning bar's run: the 3000-caption split world, 112-d features for 4500 steps, a
# disentanglement weight falling from 0.5 to the paper's 0.05 over the first 1500 steps (which
# divided the heads by kind where the constant weight did not), exporting a moving average of
# decay 0.998 from step 300 (docs/demo-experiments.md, thirty-sixth round).
PRESETS["bar"] = replace(
    PRESETS["split-long"], name="bar", world="split3k",
    train_args=("--steps", "4500", "--model.feature_dim", "112",
                "--optim.ema_decay", "0.998", "--optim.ema_start", "300",
                "--optim.dis_weight_start", "0.5", "--optim.dis_weight_steps", "1500"),
    description="the run the learning bar is met on: every figure with training seed 7 (52 "
                "minutes on 2 cores from scratch)")

# --------------------------------------------------------------------------------------------
# Running stages


def log(message: str) -> None:
    """A progress line of the demo itself (stage output streams through unchanged)."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run one stage command in the foreground; its output streams to the terminal.

    The command gets its own process group, so an interrupted stage is stopped with everything
    it started (``accelerate launch`` does not pass a signal on to the trainer it spawned).
    """
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(list(cmd), cwd=REPO, env={**os.environ, **(env or {})},
                            start_new_session=True)
    try:
        code = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    if code != 0:
        raise SystemExit(f"demo: stage command failed with exit code {code}: {' '.join(cmd)}")


def _stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop the process group of a child we started: SIGINT (lets Ray and the trainer clean up),
    then SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; give the rest of its group the same chance
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    log(f"stopped stage process group {proc.pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VideoServer:
    """``python -m http.server`` on 127.0.0.1 serving one folder; stopped by pid on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        cmd = [PY, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
               "--directory", str(self.directory)]
        log("$ " + " ".join(cmd) + "  (background)")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"demo: http.server exited with code {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise SystemExit(f"demo: http.server did not answer on {self.url} within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            log(f"stopped the video server (pid {self.proc.pid})")
            self.proc = None


# --------------------------------------------------------------------------------------------
# The pipeline


def per_class_table(segmentation: dict[str, dict[str, Any]], folders: dict[str, str]) -> str:
    """Markdown table of every class's AP per prompt kind, each linked to its example grid.

    Args:
        segmentation: prompt kind ("speech"/"sound") -> the JSON ``python -m evaluation
            segmentation`` wrote (``classes``: ``[{class_id, name, ap, ...}]``, ``examples``:
            class id -> grid path relative to that report's folder).
        folders: prompt kind -> that report's folder, relative to the Markdown that shows the table.
    Returns:
        The table; a class a kind did not evaluate shows "-".
    """
    kinds = list(segmentation)
    names: dict[int, str] = {}
    cells: dict[tuple[int, str], str] = {}
    for kind, report in segmentation.items():
        for c in report["classes"]:
            names[c["class_id"]] = c["name"]
            grid = report["examples"].get(str(c["class_id"]))
            ap = f"{c['ap']:.3f}"
            cells[c["class_id"], kind] = f"[{ap}]({folders[kind]}/{grid})" if grid else ap
    return markdown_table(
        ["class", *(f"{kind} AP" for kind in kinds)],
        [[names[i], *(cells.get((i, k), "-") for k in kinds)] for i in sorted(names)],
    )


@dataclass
class Demo:
    """One run: worlds and shards under ``root``/``store`` are shared by presets; the preset's
    training, evaluation and report live in ``root/<run name>`` (the preset's name, with
    ``-trainseed<N>`` when a training seed is given)."""

    preset: Preset
    root: Path
    store: str
    seed: int = 0
    num_processes: int = 1
    ablation: bool = False
    train_seed: int | None = None  # None: the config's seed
    # Wall seconds of each stage of this invocation, in order; None: its outputs all existed.
    timings: dict[str, float | None] = field(default_factory=dict)

    # Locations -------------------------------------------------------------------------------
    @property
    def run_name(self) -> str:
        suffix = "" if self.train_seed is None else f"-trainseed{self.train_seed}"
        return self.preset.name + suffix

    @property
    def out(self) -> Path:
        return self.root / self.run_name

    @property
    def world_name(self) -> str:
        return f"{self.preset.world}-seed{self.seed}"

    @property
    def world(self) -> Path:
        return self.root / "worlds" / self.world_name

    def dataset(self, name: str) -> str:
        return storage.join(self.store, "shards", self.world_name, name)

    @property
    def train_dir(self) -> Path:
        return self.out / "train"

    @property
    def model_dir(self) -> Path:
        return self.train_dir / "final_model"

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    def prompt_set(self, kind: str) -> Path:
        """The world's held-out ``kind`` ("speech"/"sound") prompted-segmentation set."""
        return self.world / "eval" / kind

    def segmentation_report(self, kind: str) -> Path:
        """The JSON ``python -m evaluation segmentation`` writes for the ``kind`` prompts."""
        return self.eval_dir / kind / f"segmentation_{kind}.json"

    def retrieval_report(self, kind: str) -> Path:
        """The JSON ``python -m evaluation retrieval`` writes for the ``kind`` pool (its Markdown,
        which lists the misses, beside it with the suffix ``.md``)."""
        return self.eval_dir / f"retrieval_{kind}" / "retrieval.json"

    @property
    def disentanglement_report(self) -> Path:
        return self.eval_dir / "disentanglement" / "disentanglement.json"

    def class_names(self) -> list[str]:
        manifest = json.loads((self.world / "manifest.json").read_text())
        return [c["name"] for c in manifest["classes"]]

    # Stages ----------------------------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[], bool]) -> None:
        """Run one stage; ``fn`` returns whether it did any work (False: all outputs existed)."""
        log(f"== {name} ==")
        start = time.monotonic()
        if fn():
            self.timings[name] = round(time.monotonic() - start, 1)
            log(f"== {name} done in {self.timings[name]:.0f} s ==")
        else:
            self.timings[name] = None
            log(f"== {name}: outputs exist, nothing to do ==")

    def world_args(self) -> list[str]:
        """Arguments of ``python -m ingest.toyworld`` for this preset's world."""
        return ["--out", str(self.world), "--seed", str(self.seed), *WORLDS[self.preset.world]]

    def make_world(self) -> bool:
        manifest = self.world / "manifest.json"
        if manifest.is_file():
            self.check_world(json.loads(manifest.read_text()))
            log(f"world exists ({manifest}); skipped")
            return False
        cmd = [PY, "-m", "ingest.toyworld", *self.world_args()]
        if self.world.exists():  # an interrupted generation: replace its partial outputs
            cmd.append("--force")
        run(cmd)
        return True

    def world_config(self) -> dict[str, Any]:
        """The config the generator's manifest records for this preset's world: its own parser
        turns the arguments into it (through JSON, as the manifest was: tuples become lists)."""
        from ingest.toyworld.__main__ import parse_world_args

        return json.loads(json.dumps(parse_world_args(self.world_args())[1].to_dict()))

    def check_world(self, manifest: dict[str, Any]) -> None:
        """Stop if an existing world was generated with other settings than this preset's, or by
        another version of the generator (its shards, pools and prompts would silently measure
        something else)."""
        from ingest.toyworld import GENERATOR_VERSION

        wanted = self.world_config()
        found = manifest.get("config", {})
        differ = [f"{key}={found.get(key)} (wanted {value})" for key, value in wanted.items()
                  if found.get(key) != value]
        if manifest.get("version") != GENERATOR_VERSION:
            differ.append(f"generator version {manifest.get('version')} (wanted {GENERATOR_VERSION})")
        if differ:
            raise SystemExit(
                f"demo: the world {self.world} was generated with other settings: "
                f"{', '.join(differ)}; start afresh with another --out (and --store), or "
                f"remove {self.root} and the store's shards and checkpoints"
            )

    def ingest_done(self, name: str) -> bool:
        url = storage.join(self.dataset(name), "ingest_summary.json")
        if not storage.exists(url):
            return False
        summary = json.loads(storage.read_bytes(url))
        return not summary["shard_errors"] and (
            summary["shards_skipped"] + summary["shards_written"] == summary["shards_total"]
        )

    def ray_args(self) -> list[str]:
        # Ray's own temp folder: its socket paths must stay under 107 bytes, which a deep --out
        # would break.
        return ["--num-cpus", str(os.cpu_count() or 2), "--memory", "3G",
                "--object-store-memory", "256M", "--short-side", "128"]

    def ingest(self) -> bool:
        from ingest.toyworld import world as layout

        # Items per shard: a video holds 1-3 segments, a caption is one clip; several shards per
        # dataset keep both cores busy in ingest and give every training loader worker its own.
        jobs = {
            "audioset": ["audioset", str(self.world / layout.SEGMENTS_CSV),
                         "--items-per-shard", "10"],
            "audioset_eval": ["audioset", str(self.world / layout.EVAL_SEGMENTS_CSV),
                              "--items-per-shard", "10"],
            "audioset_retrieval": ["audioset", str(self.world / layout.RETRIEVAL_SEGMENTS_CSV),
                                   "--items-per-shard", "20"],
            "placesaudio": ["placesaudio", str(self.world / "placesaudio"), "--split", "train",
                            "--items-per-shard", "80"],
            "placesaudio_val": ["placesaudio", str(self.world / "placesaudio"), "--split", "val",
                                "--items-per-shard", "80"],
        }
        todo = {name: args for name, args in jobs.items() if not self.ingest_done(name)}
        for name in sorted(set(jobs) - set(todo)):
            log(f"dataset {self.dataset(name)} is complete; skipped")
        if not todo:
            return False
        env = {"RAY_USAGE_STATS_ENABLED": "0"}
        needs_videos = any(args[0] == "audioset" for args in todo.values())
        with contextlib.ExitStack() as stack:
            if needs_videos:
                server = stack.enter_context(VideoServer(self.world / layout.VIDEOS_DIR))
            for name, args in todo.items():
                extra = []
                if args[0] == "audioset":
                    extra = ["--class-labels", str(self.world / layout.CLASS_LABELS_CSV),
                             "--url-template", layout.video_url_template(self.world, server.url)]
                run([PY, "-m", "ingest", *args, *extra, "--output", self.dataset(name),
                     *self.ray_args()], env)
                if not self.ingest_done(name):
                    raise SystemExit(f"demo: ingest of {name} did not complete; rerun to resume")
        return True

    def pools(self) -> bool:
        built = False
        # Sound clips come from the world's retrieval videos, whose objects are heard in turn: in
        # the held-out videos sounds overlap, and an ideal model could tell fewer than one in ten
        # of a 100-way pool apart (ingest/toyworld/audioset.py).
        for kind, src in (("speech", "placesaudio_val"), ("sound", "audioset_retrieval")):
            dst = self.dataset(f"pool_{kind}")
            if storage.exists(storage.join(dst, INDEX_NAME)):
                log(f"retrieval pool {dst} exists; skipped")
                continue
            run([PY, "-m", "evaluation", "pool", "--data", self.dataset(src), "--out", dst,
                 "--size", str(self.preset.pool), "--class-words", ",".join(self.class_names())])
            built = True
        return built

    def launch_prefix(self) -> tuple[list[str], dict[str, str]]:
        """``accelerate launch`` for 1 CPU process, or the MACHINE-NOTES form for several
        (``--cpu --num_processes 2`` would silently run one process)."""
        # One compute thread per process beside its two loader workers: on 2 shared cores, two
        # OpenMP threads made a step 3.5x slower (spinning threads waiting for a busy core).
        threads = str(max(1, (os.cpu_count() or 2) // (2 * self.num_processes)))
        common = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--num_cpu_threads_per_process", threads]
        if self.num_processes == 1:
            return [ACCELERATE, "launch", "--cpu", "--num_processes", "1", *common], {}
        return [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(self.num_processes),
                *common, "--main_process_port", str(free_port())], {"ACCELERATE_USE_CPU": "1"}

    def training_overrides(self) -> list[str]:
        """The preset's trainer overrides, and the training seed when one is given."""
        seed = [] if self.train_seed is None else ["--seed", str(self.train_seed)]
        return [*self.preset.train_args, *seed]

    def train_args(self) -> list[str]:
        datasets = (
            f"[{{url: '{self.dataset('audioset')}', weight: 1, name: audioset}}, "
            f"{{url: '{self.dataset('placesaudio')}', weight: 1, name: placesaudio}}]"
        )
        return ["--config", str(REPO / self.preset.config), *self.training_overrides(),
                "--data.datasets", datasets, "--output_dir", str(self.train_dir),
                "--checkpoint.dir", storage.join(self.store, "checkpoints", self.run_name),
                "--checkpoint.export_dir", str(self.model_dir), "--checkpoint.resume", "latest"]

    def train(self) -> bool:
        if (self.model_dir / "model.safetensors").is_file():
            log(f"trained model exists ({self.model_dir}); skipped")
            return False
        prefix, env = self.launch_prefix()
        run([*prefix, str(REPO / "trainer" / "main.py"), *self.train_args()], env)
        return True

    def evaluate(self) -> bool:
        model, p = str(self.model_dir), self.preset
        ran = False
        # (report, the summary figures it must hold to be reused, evaluation arguments)
        jobs = [
            *((self.segmentation_report(kind), SEGMENTATION_FIGURES,
               ["segmentation", "--data", str(self.prompt_set(kind))])
              for kind in KINDS),
            *((self.retrieval_report(kind), (),
               ["retrieval", "--data", self.dataset(f"pool_{kind}"), "--pool", str(p.pool)])
              for kind in KINDS),
            (self.disentanglement_report, (),
             ["disentanglement", "--sound-data", self.dataset("audioset_eval"),
              "--speech-data", self.dataset("placesaudio_val"), "--clips", str(p.dis_clips)]),
        ]
        for report, figures, args in jobs:
            if report.is_file():
                summary = json.loads(report.read_text())["summary"] if figures else {}
                missing = [f for f in figures if f not in summary]
                if not missing:
                    log(f"{report} exists; skipped")
                    continue
                log(f"{report} lacks {', '.join(missing)} (an earlier evaluation wrote it); "
                    "measuring again")
            run([PY, "-m", "evaluation", args[0], "--model", model, "--out", str(report.parent),
                 "--device", "cpu", *args[1:]])
            ran = True
        return ran

    def pictures(self) -> bool:
        """Figure-1 style per-head overlays for one speech and one sound prompt."""
        from evaluation.datasets import load_prompted_set

        dis = json.loads(self.disentanglement_report.read_text())
        names = ["sound", "language"] if dis["sound_head"] == 0 else ["language", "sound"]
        ran = False
        for kind in KINDS:
            out = self.eval_dir / "pictures" / kind
            if out.is_dir() and any(out.glob("*_heads.png")):
                log(f"pictures in {out} exist; skipped")
                continue
            prompt = load_prompted_set(self.prompt_set(kind)).prompts[0]
            run([PY, "-m", "evaluation.predict", "--model", str(self.model_dir),
                 "--image", str(prompt.image_path), "--audio", str(prompt.audio_path),
                 "--out", str(out), "--device", "cpu", "--head-names", ",".join(names)])
            ran = True
        return ran

    def run_ablation(self) -> bool:
        out = self.out / "ablation"
        if (out / "ablation.json").is_file() and len(
            json.loads((out / "ablation.json").read_text())["rows"]
        ) == len(self.preset.ablation_aggregations.split(",")):
            log(f"{out / 'ablation.json'} is complete; skipped")
            return False
        datasets = self.train_args()[self.train_args().index("--data.datasets") + 1]
        run([PY, "-m", "evaluation", "ablation", "--config", str(REPO / self.preset.config),
             "--speech-data", str(self.prompt_set("speech")),
             "--retrieval-data", self.dataset("pool_speech"), "--pool", str(self.preset.pool),
             "--aggregations", self.preset.ablation_aggregations, "--out", str(out),
             "--device", "cpu", *self.training_overrides(), "--data.datasets", datasets],
            {"OMP_NUM_THREADS": "1"})  # the ablation's trainers: one compute thread, as in train
        return True

    # Report ----------------------------------------------------------------------------------
    def stage_seconds(self) -> dict[str, float | None]:
        """Wall time of every stage: this invocation's, or for a stage whose outputs were reused
        the time the previous report of this preset recorded (None when there is none)."""
        previous = self.out / "report.json"
        earlier = json.loads(previous.read_text()).get("stage_seconds", {}) if previous.is_file() else {}
        return {name: earlier.get(name) if t is None else t for name, t in self.timings.items()}

    def machine(self) -> dict[str, Any] | None:
        """The training machine as the trainer recorded it in ``run.json`` (None before training):
        the figures hold for its CPU; on another the same run ends like another seed would."""
        run = self.train_dir / "run.json"
        return json.loads(run.read_text()).get("machine") if run.is_file() else None

    def metrics(self, segmentation: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Every figure of the run, flat; ``segmentation`` holds the segmentation reports
        (prompt kind -> the JSON of ``segmentation_report``), which the report also tabulates."""

        def load(path: Path) -> dict[str, Any]:
            return json.loads(path.read_text())

        m: dict[str, Any] = {}
        for kind in KINDS:
            s = segmentation[kind]["summary"]
            m.update({f"{kind}_{figure}": s[figure] for figure in SEGMENTATION_FIGURES})
            r = load(self.retrieval_report(kind))
            m[f"{kind}_retrieval_pool"] = r["pool"]
            for key, value in r["recall"].items():
                m[f"{kind}_retrieval_{key}"] = value
        d = load(self.disentanglement_report)
        m["PredDis"], m["ActDis"], m["sound_head"] = d["PredDis"], d["ActDis"], d["sound_head"]
        ablation = self.out / "ablation" / "ablation.json"
        if ablation.is_file():
            rows = {r["aggregation"]: r for r in load(ablation)["rows"]}
            m["ablation"] = rows
            if "multihead" in rows and len(rows) > 1:
                others = [r["speech_mAP"] for a, r in rows.items() if a != "multihead"]
                m["ablation_speech_mAP_gap"] = rows["multihead"]["speech_mAP"] - max(others)
        return m

    def report(self) -> Path:
        segmentation = {kind: json.loads(self.segmentation_report(kind).read_text())
                        for kind in KINDS}
        m = self.metrics(segmentation)
        rows = []
        for key, bar in BAR.items():
            if key not in m:
                continue
            chance = ""
            if key.endswith("_mAP") and not key.startswith("ablation"):
                chance = f"{m[key.replace('_mAP', '_chance_mAP')]:.3f}"
            elif "_R@1" in key:
                chance = f"{1 / m[key.split('_retrieval')[0] + '_retrieval_pool']:.3f}"
            rows.append({"metric": key, "value": m[key], "bar": bar, "chance": chance,
                         "met": m[key] >= bar})
        pictures = sorted(str(p) for p in (self.eval_dir / "pictures").rglob("*.png"))
        grids = sorted(str(p) for p in self.eval_dir.glob("*/examples/*.png"))
        seconds = self.stage_seconds()
        reused = [name for name, t in self.timings.items() if t is None]
        machine = self.machine()
        report = {"preset": self.preset.name, "seed": self.seed, "train_seed": self.train_seed,
                  "store": self.store, "num_processes": self.num_processes, "metrics": m, "bar": rows,
                  "stage_seconds": seconds, "stages_reused": reused, "machine": machine,
                  "pictures": pictures, "example_grids": grids, "model": str(self.model_dir)}
        (self.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        title = f"preset `{self.preset.name}`"
        if self.train_seed is not None:
            title += f", training seed {self.train_seed}"
        lines = [
            f"# DenseAV demo report ({title})",
            "",
            markdown_table(["metric", "value", "bar", "chance", "met"], [
                [r["metric"], f"{r['value']:.3f}", f"{r['bar']:.2f}", r["chance"],
                 "yes" if r["met"] else "NO"] for r in rows]),
            "",
            (
                f"- mIoU: speech {m['speech_mIoU']:.3f}, sound {m['sound_mIoU']:.3f}; retrieval"
                f" pools {m['speech_retrieval_pool']}-way (speech) and"
                f" {m['sound_retrieval_pool']}-way (sound), no clip naming a subset of what another names;"
                f" sound head: {m['sound_head']}"
            ),
            "- pointing game (share of prompts whose heatmap peaks on the object): " + ", ".join(
                f"{k} {m[f'{k}_pointing']:.3f}" for k in KINDS),
            "- R@5 / R@10: " + "; ".join(
                f"{k} {label} {m[f'{k}_retrieval_{d}_R@5']:.3f} / {m[f'{k}_retrieval_{d}_R@10']:.3f}"
                for k in KINDS
                for d, label in (("a2v", "A->V"), ("v2a", "V->A"))),
            "- retrieval misses, each with the clip ranked first: " + ", ".join(
                str(self.retrieval_report(k).with_suffix(".md").relative_to(self.out))
                for k in KINDS),
        ]
        if "ablation" in m:
            lines += ["", "Ablation (same budget): " + ", ".join(
                f"{a} speech mAP {r['speech_mAP']:.3f} / A->V R@1 {r.get('a2v_R@1', 0):.3f}"
                for a, r in m["ablation"].items())]
        def shown(name: str, value: float | None) -> str:
            if name not in reused:
                return f"{name} {value:.0f}"
            return f"{name} {value:.0f}*" if value is not None else f"{name} (reused)"

        lines += ["", "Stage wall times (s): " + ", ".join(shown(*kv) for kv in seconds.items())]
        if reused:
            lines += ["", ("(* outputs reused from an earlier invocation; its time as that run "
                           "reported it. 'reused' without a time: made by another preset's run.)")]
        if machine:
            lines += ["", (f"Trained on {machine['cpu']} ({machine['torch_cpu_capability']} "
                           f"kernels, torch {machine['torch']}); on another CPU the same run ends "
                           "like another training seed would.")]
        lines += ["", "## Pictures", ""]
        lines += [f"![{Path(p).stem}]({Path(p).relative_to(self.out)})" for p in pictures]
        lines += ["", "Per-class AP (each links its example grid: best, worst and a random prompt):",
                  ""]
        lines.append(per_class_table(
            segmentation,
            {kind: str(self.segmentation_report(kind).parent.relative_to(self.out))
             for kind in KINDS}))
        path = self.out / "report.md"
        path.write_text("\n".join(lines) + "\n")
        print("\n".join(lines[:3]))  # the title and the metrics table
        return path

    def main(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.stage("world", self.make_world)
        self.stage("ingest", self.ingest)
        self.stage("pools", self.pools)
        self.stage("train", self.train)
        self.stage("evaluate", self.evaluate)
        self.stage("pictures", self.pictures)
        if self.ablation:
            self.stage("ablation", self.run_ablation)
        report = self.report()
        log(f"done: report {report} (+ report.json); world {self.world}; shards "
            f"{self.dataset('')}; model {self.model_dir}; evaluation {self.eval_dir}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.py", description=__doc__.split("\n\n")[0],
        epilog="Presets: " + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()),
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="run size (default: default)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "demo",
                        help="local output root: worlds/, shards/, checkpoints/ and one folder "
                             "per preset (default: outputs/demo)")
    parser.add_argument("--store", default=None,
                        help="where shards and checkpoints go: a folder or s3://bucket/prefix "
                             "(S3 settings from AWS_* variables; default: OUT)")
    parser.add_argument("--seed", type=int, default=0, help="toy world seed (default 0)")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="training seed (default: the config's, 0); its training, checkpoints "
                             "and report go to <preset>-trainseed<N> beside the preset's")
    parser.add_argument("--num-processes", type=int, default=1,
                        help="training processes on this machine (default 1)")
    parser.add_argument("--ablation", action="store_true",
                        help="also run the Table 4 ablation in miniature")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A SIGTERM stops the running stage (and the video server) like Ctrl+C does.
    signal.signal(signal.SIGTERM, _interrupt)
    preset = PRESETS[args.preset]
    out = args.out.resolve()
    store = args.store or str(out)
    Demo(preset, out, store, args.seed, args.num_processes, args.ablation, args.train_seed).main()


if __name__ == "__main__":
    main()
