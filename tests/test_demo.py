"""The demo (scripts/demo.py): its own logic fast, and the smoke preset end to end (slow)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.toyworld import GENERATOR_VERSION

REPO = Path(__file__).resolve().parent.parent


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo_script", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_script"] = module
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


def test_an_existing_world_made_with_other_settings_stops_the_demo(tmp_path, monkeypatch):
    d = demo.Demo(demo.PRESETS["default"], tmp_path, str(tmp_path))
    monkeypatch.setattr(demo, "run", lambda cmd, env=None: pytest.fail("must not regenerate"))
    d.world.mkdir(parents=True)
    old = {"config": d.world_config()}
    old["config"]["speech_val"] = 200
    (d.world / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(SystemExit, match=r"speech_val=200 \(wanted 600\)"):
        d.make_world()


def test_a_world_from_another_generator_version_stops_the_demo(tmp_path, monkeypatch):
    d = demo.Demo(demo.PRESETS["default"], tmp_path, str(tmp_path))
    monkeypatch.setattr(demo, "run", lambda cmd, env=None: pytest.fail("must not regenerate"))
    d.world.mkdir(parents=True)
    (d.world / "manifest.json").write_text(
        json.dumps({"config": d.world_config(), "version": "1.0.0"})
    )
    wanted = rf"generator version 1.0.0 \(wanted {GENERATOR_VERSION}\)"
    with pytest.raises(SystemExit, match=wanted):
        d.make_world()


def test_complete_stages_are_skipped(tmp_path, monkeypatch):
    d = demo.Demo(demo.PRESETS["smoke"], tmp_path, str(tmp_path))
    calls = []
    monkeypatch.setattr(demo, "run", lambda cmd, env=None: calls.append(cmd))

    assert d.make_world()  # no manifest: the generator runs
    assert calls and calls[-1][2:] == ["ingest.toyworld", *d.world_args()]
    d.world.mkdir(parents=True)
    (d.world / "manifest.json").write_text(
        json.dumps({"config": d.world_config(), "version": GENERATOR_VERSION})
    )
    assert not d.make_world()
    assert len(calls) == 1

    summary = {"shard_errors": {}, "shards_skipped": 1, "shards_written": 2, "shards_total": 3}
    for name in ("audioset", "audioset_eval", "audioset_retrieval", "placesaudio", "placesaudio_val"):
        folder = Path(d.dataset(name))
        folder.mkdir(parents=True)
        (folder / "ingest_summary.json").write_text(json.dumps(summary))
    assert not d.ingest()  # every dataset complete: no ingest command, no video server
    assert len(calls) == 1
    for kind in demo.KINDS:
        pool = Path(d.dataset(f"pool_{kind}"))
        pool.mkdir(parents=True)
        (pool / "index.json").write_text("{}")
    assert not d.pools()
    assert len(calls) == 1

    bad = summary | {"shard_errors": {"2": "worker died"}}
    (Path(d.dataset("placesaudio")) / "ingest_summary.json").write_text(json.dumps(bad))
    assert not d.ingest_done("placesaudio")


def test_segmentation_reports_lacking_a_figure_are_measured_again(tmp_path, monkeypatch):
    d = demo.Demo(demo.PRESETS["smoke"], tmp_path, str(tmp_path))
    calls = []
    monkeypatch.setattr(demo, "run", lambda cmd, env=None: calls.append(cmd))
    current = {figure: 0.5 for figure in demo.SEGMENTATION_FIGURES}
    earlier = {k: v for k, v in current.items() if k != "pointing"}  # before the pointing game
    for kind, summary in (("speech", current), ("sound", earlier)):
        d.segmentation_report(kind).parent.mkdir(parents=True)
        d.segmentation_report(kind).write_text(json.dumps({"summary": summary}))
    for report in (*map(d.retrieval_report, demo.KINDS), d.disentanglement_report):
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("{}")

    assert d.evaluate()
    assert len(calls) == 1
    assert calls[0][3] == "segmentation" and str(d.prompt_set("sound")) in calls[0]
    d.segmentation_report("sound").write_text(json.dumps({"summary": current}))
    assert not d.evaluate()
    assert len(calls) == 1


def test_reused_stages_report_the_time_of_the_run_that_made_them(tmp_path):
    d = demo.Demo(demo.PRESETS["smoke"], tmp_path, str(tmp_path))
    d.out.mkdir(parents=True)
    (d.out / "report.json").write_text(json.dumps({"stage_seconds": {"world": 72.0, "train": 700.0}}))
    d.stage("world", lambda: False)
    d.stage("ingest", lambda: False)  # made by another preset's run: no time on record
    d.stage("train", lambda: True)
    assert list(d.stage_seconds()) == ["world", "ingest", "train"]
    assert d.stage_seconds()["world"] == 72.0
    assert d.stage_seconds()["ingest"] is None
    assert 0 <= d.stage_seconds()["train"] < 5  # this invocation's, not the earlier 700 s


def test_report_names_the_training_machine_from_the_trainers_run_record(tmp_path):
    d = demo.Demo(demo.PRESETS["smoke"], tmp_path, str(tmp_path))
    assert d.machine() is None  # not trained yet
    d.train_dir.mkdir(parents=True)
    machine = {"cpu": "AMD EPYC", "torch_cpu_capability": "AVX512", "torch": "2.13.0+cpu"}
    (d.train_dir / "run.json").write_text(json.dumps({"world_size": 1, "machine": machine}))
    assert d.machine() == machine


def test_training_uses_both_corpora_resume_and_the_machine_notes_launch_form(tmp_path):
    d = demo.Demo(demo.PRESETS["default"], tmp_path, "s3://bucket/demo", num_processes=2)
    args = d.train_args()
    assert args[args.index("--checkpoint.resume") + 1] == "latest"
    assert args[args.index("--checkpoint.dir") + 1] == "s3://bucket/demo/checkpoints/default"
    datasets = args[args.index("--data.datasets") + 1]
    assert "'s3://bucket/demo/shards/demo-seed0/audioset'" in datasets
    assert "'s3://bucket/demo/shards/demo-seed0/placesaudio'" in datasets
    prefix, env = d.launch_prefix()
    assert env == {"ACCELERATE_USE_CPU": "1"}
    assert "--multi_gpu" in prefix and prefix[prefix.index("--num_processes") + 1] == "2"


def test_a_training_seed_trains_beside_the_preset_on_the_same_world(tmp_path):
    from trainer.params import load_config

    preset = demo.PRESETS["split-long"]
    own, seeded = (demo.Demo(preset, tmp_path, str(tmp_path), train_seed=s) for s in (None, 1))
    assert seeded.world == own.world and seeded.dataset("audioset") == own.dataset("audioset")
    assert seeded.out == tmp_path / "split-long-trainseed1" != own.out
    args = seeded.train_args()
    assert args[args.index("--checkpoint.dir") + 1].endswith("checkpoints/split-long-trainseed1")
    assert load_config(args[1], args[2:]).seed == 1
    assert load_config(args[1], own.train_args()[2:]).seed == 0  # the config's
    assert demo.parse_args(["--train-seed", "1"]).train_seed == 1


@pytest.mark.parametrize("name", sorted(demo.PRESETS))
def test_every_preset_trains_a_valid_configuration(name, tmp_path):
    from trainer.params import load_config

    args = demo.Demo(demo.PRESETS[name], tmp_path, str(tmp_path)).train_args()
    cfg = load_config(args[1], args[2:])
    assert cfg.steps == int(args[args.index("--steps") + 1])
    assert [d.name for d in cfg.data.datasets] == ["audioset", "placesaudio"]


@pytest.mark.parametrize("name", sorted(demo.PRESETS))
def test_every_preset_names_a_valid_world(name, tmp_path):
    from ingest.toyworld.__main__ import parse_world_args

    cfg = parse_world_args(demo.Demo(demo.PRESETS[name], tmp_path, str(tmp_path)).world_args())[1]
    named, sounding = {c.name for c in cfg.named_classes}, {c.name for c in cfg.sounding_classes}
    if "--speech-classes" in demo.WORLDS[demo.PRESETS[name].world]:  # each class in one corpus
        assert named.isdisjoint(sounding) and len(named | sounding) == cfg.num_classes
    else:
        assert named == sounding == {c.name for c in cfg.classes}


def test_per_class_table_links_each_class_to_its_grid_and_marks_classes_not_evaluated():
    speech = {"classes": [{"class_id": 2, "name": "star", "ap": 0.5},
                          {"class_id": 1, "name": "ball", "ap": 0.91234}],
              "examples": {"1": "examples/class_00001.png", "2": "examples/class_00002.png"}}
    sound = {"classes": [{"class_id": 1, "name": "ball", "ap": 0.25}], "examples": {}}
    table = demo.per_class_table({"speech": speech, "sound": sound},
                                 {"speech": "eval/speech", "sound": "eval/sound"})
    assert table.splitlines() == [
        "| class | speech AP | sound AP |",
        "|---|---|---|",
        "| ball | [0.912](eval/speech/examples/class_00001.png) | 0.250 |",
        "| star | [0.500](eval/speech/examples/class_00002.png) | - |",
    ]


def test_help_lists_presets():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for name in demo.PRESETS:
        assert name in out


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_smoke_preset_learns_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(REPO / "scripts" / "demo.py"), "--preset", "smoke",
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "done: report" in done.stdout.splitlines()[-1]
    report = json.loads((out / "smoke" / "report.json").read_text())
    m = report["metrics"]
    # Learning happened: 300 steps lift sound-prompted segmentation clearly above the mask-area
    # chance level (the default preset measured 2.2x chance after 300 steps; speech-prompted
    # segmentation and retrieval need longer), and nothing scores below chance.
    assert m["sound_mAP"] > 1.5 * m["sound_chance_mAP"]
    assert m["speech_mAP"] > 0.9 * m["speech_chance_mAP"]
    assert report["pictures"] and all(Path(p).is_file() for p in report["pictures"])
    assert report["machine"]["torch_cpu_capability"]  # the run.json the trainer wrote
    summary = (out / "smoke" / "report.md").read_text()
    for kind in ("speech", "sound"):  # the lists of retrieval misses are linked and exist
        link = f"eval/retrieval_{kind}/retrieval.md"
        assert link in summary and (out / "smoke" / link).is_file()
    grids = re.findall(r"\]\((eval/\w+/examples/class_\d+\.png)\)", summary)
    assert len(grids) == 24 and all((out / "smoke" / g).is_file() for g in grids)  # 12 x 2 kinds

    rerun = subprocess.run(cmd, capture_output=True, text=True, check=False)  # resumes: everything skipped
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "skipped" in rerun.stdout and "$ " + sys.executable + " -m ingest " not in rerun.stdout
