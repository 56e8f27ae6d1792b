"""End-to-end training runs on small shards written by the real shards writer.

- a 2-process CPU run through ``accelerate launch`` (fast; default suite): two ranks really train
  together, see different samples, switch phase, checkpoint and export;
- phase switching in one process (fast): what trains in each phase, the per-phase warm-up;
- exact resume (slow): kill -9 in the middle of a 2-process run against the local S3 server,
  resume from the newest complete checkpoint, and compare every later step's losses with an
  uninterrupted run.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from denseav.config import DenseAVConfig
from denseav.model import DenseAV
from shards import storage
from shards.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "trainer" / "main.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


def _datasets(base: str) -> list[dict]:
    """Two small sources (4 shards x 6 samples each) in the real shard format."""
    out = []
    for i, name in enumerate(("audioset", "places")):
        url = storage.join(base, name)
        write_synthetic_dataset(
            url,
            num_shards=4,
            samples_per_shard=6,
            seed=i,
            name=name,
            num_frames=2,
            frame_size=(40, 48),
        )
        out.append({"url": url, "weight": 1, "name": name})
    return out


def _config(path: Path, datasets: list[dict], output_dir: Path, ckpt_dir: str, **top) -> Path:
    cfg = {
        "model": {"preset": "tiny"},
        "data": {
            "datasets": datasets,
            "batch_size": 4,
            "num_workers": 1,
            "shuffle_buffer": 8,
            "image_size": 32,
        },
        "steps": 3,
        "warmup_aligner_steps": 2,
        "optim": {"warmup_steps": 2, "lr": 1e-3},
        "checkpoint": {"dir": ckpt_dir, "every": 0, "keep": 2},
        "logging": {"every": 1, "record_samples": True, "progress": False, "trackers": []},
        "output_dir": str(output_dir),
    }
    for key, value in top.items():
        section, _, leaf = key.partition("__")
        if leaf:
            cfg[section][leaf] = value
        else:
            cfg[section] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_in_process(
    tmp_path: Path, datasets: list[dict], out: Path, steps: int, **top
) -> dict[str, torch.Tensor]:
    """Train in this process with a checkpoint after every step in ``tmp_path/ckpt`` (resumed
    from when present); returns the exported weights."""
    from trainer.main import run
    from trainer.params import load_config

    config = _config(
        tmp_path / "cfg.yaml",
        datasets,
        out,
        str(tmp_path / "ckpt"),
        steps=steps,
        checkpoint__every=1,
        checkpoint__keep=5,
        checkpoint__resume="latest",
        data__num_workers=0,
        **top,
    )
    run(load_config(config))
    return load_file(out / "final_model" / "model.safetensors")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_cmd(config: Path, *extra: str) -> list[str]:
    # The CPU switch is what makes two processes train together (MACHINE-NOTES: `--cpu
    # --num_processes 2` silently runs one); the test checks world_size == 2 below.
    return [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(MAIN),
        "--config",
        str(config),
        *extra,
    ]


def _launch_to_completion(config: Path, cwd: Path, *extra: str, timeout: float = 900) -> None:
    """Run a 2-process training to the end; a failure shows the end of its stderr."""
    result = subprocess.run(
        _launch_cmd(config, *extra),
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _env() -> dict:
    return {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
    }


def _metrics(output_dir: Path) -> dict[int, dict]:
    lines = (output_dir / "metrics.jsonl").read_text().split("\n")[:-1]  # complete lines only
    return {row["step"]: row for row in map(json.loads, lines)}


def test_two_process_run_trains_together(tmp_path):
    datasets = _datasets(str(tmp_path / "data"))
    out = tmp_path / "run"
    # Two micro-batches per step: DDP skips the all-reduce on the first, the gather does not.
    config = _config(
        tmp_path / "cfg.yaml", datasets, out, str(tmp_path / "ckpt"), optim__grad_accum=2
    )
    # From an unrelated working directory: nothing depends on being inside the project.
    _launch_to_completion(config, tmp_path, timeout=600)

    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and "MULTI_CPU" in run["distributed_type"]
    seen = {}
    for rank in (0, 1):
        rows = [json.loads(x) for x in (out / f"samples-rank{rank}.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 0, 1, 1, 2, 2]
        for r in rows:  # every batch split evenly between the two sources
            assert sorted(r["sources"]) == ["audioset", "audioset", "places", "places"]
        seen[rank] = [k for r in rows for k in r["keys"]]
        assert len(set(seen[rank])) == len(seen[rank]) == 24  # one pass over this rank's half
    assert not set(seen[0]) & set(seen[1]), "the two ranks trained on the same samples"

    metrics = _metrics(out)
    assert sorted(metrics) == [1, 2, 3]
    assert [metrics[s]["phase"] for s in (1, 2, 3)] == [1, 1, 2]
    for row in metrics.values():
        assert all(torch.isfinite(torch.tensor(v)) for k, v in row.items() if k.startswith("loss"))
        assert row["samples_per_s"] > 0 and row["data_wait_s"] >= 0
    assert storage.exists(str(tmp_path / "ckpt" / "step-000000003" / "COMPLETE"))
    for rank in (0, 1):
        assert (tmp_path / "ckpt" / "step-000000003" / f"rank-{rank}.pt").is_file()
    model = DenseAV.from_pretrained(out / "final_model")
    assert model.config.heads == 2


def test_phase_switch_trains_the_backbones_only_in_phase_2(tmp_path):
    from trainer.main import run
    from trainer.params import load_config

    datasets = _datasets(str(tmp_path / "data"))
    out = tmp_path / "run"
    config = _config(
        tmp_path / "cfg.yaml",
        datasets,
        out,
        str(tmp_path / "ckpt"),
        steps=3,
        checkpoint__every=2,
        checkpoint__keep=5,
        data__num_workers=0,
    )
    cfg = load_config(config)
    state = run(cfg)
    assert (state.step, state.phase) == (3, 2)

    torch.manual_seed(cfg.seed)
    initial = DenseAV(DenseAVConfig.tiny()).state_dict()
    after1 = load_file(tmp_path / "ckpt" / "step-000000002" / "model.safetensors")
    after2 = load_file(tmp_path / "ckpt" / "step-000000003" / "model.safetensors")

    def changed(a, b, select):
        names = [n for n in initial if select(n)]
        assert names
        return {n: not torch.equal(a[n], b[n]) for n in names}

    aligner = lambda n: (
        n.startswith(("image_aligner", "audio_aligner")) or n == "inverse_temperature"
    )
    audio = lambda n: n.startswith("audio_backbone")
    lora = lambda n: n.startswith("image_backbone") and "lora_B" in n
    image_base = lambda n: n.startswith("image_backbone") and "lora_" not in n
    assert any(changed(initial, after1, aligner).values())
    assert not any(changed(initial, after1, audio).values())
    assert not any(changed(initial, after1, lora).values())
    assert any(changed(after1, after2, audio).values())
    assert any(changed(after1, after2, lora).values())
    assert not any(changed(initial, after2, image_base).values())  # DINO itself stays frozen

    # Every checkpoint is also a model folder: it loads as the model of its step.
    final = DenseAV.from_pretrained(out / "final_model")
    for step, weights in ((2, after1), (3, after2)):
        loaded = DenseAV.from_pretrained(tmp_path / "ckpt" / f"step-{step:09d}")
        assert loaded.config == final.config
        assert all(torch.equal(v, weights[k]) for k, v in loaded.state_dict().items())
    assert all(torch.equal(v, after2[k]) for k, v in final.state_dict().items())

    metrics = _metrics(out)
    assert [metrics[s]["phase"] for s in (1, 2, 3)] == [1, 1, 2]
    # Linear warm-up over 2 steps, restarted when phase 2 begins.
    assert [metrics[s]["lr/aligners"] for s in (1, 2, 3)] == pytest.approx([5e-4, 1e-3, 5e-4])

    # run.json names the machine (the same config and seed take another float path on another CPU).
    machine = json.loads((out / "run.json").read_text())["machine"]
    assert machine["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu"] and machine["torch"] == torch.__version__ and machine["cpu_count"] >= 1


def test_weight_average_is_exported_and_resumed_exactly(tmp_path):
    datasets = _datasets(str(tmp_path / "data"))
    ckpt = tmp_path / "ckpt"

    def train(out: Path) -> dict[str, torch.Tensor]:
        return _train_in_process(
            tmp_path, datasets, out, 4, optim__ema_decay=0.5, optim__ema_start=2
        )

    exported = train(tmp_path / "run")
    trained = {
        s: load_file(ckpt / f"step-{s:09d}" / "training_weights.safetensors") for s in (2, 3, 4)
    }
    assert not (ckpt / "step-000000001" / "training_weights.safetensors").exists()  # not started
    for name in ("image_aligner.proj.weight", "audio_aligner.conv1.bias", "inverse_temperature"):
        w = {s: trained[s][name] for s in trained}
        torch.testing.assert_close(exported[name], 0.5 * (0.5 * w[2] + 0.5 * w[3]) + 0.5 * w[4])
    assert not torch.equal(
        exported["image_aligner.proj.weight"], trained[4]["image_aligner.proj.weight"]
    )
    final = load_file(ckpt / "step-000000004" / "model.safetensors")
    assert all(torch.equal(v, final[k]) for k, v in exported.items())

    # Resumed from step 3 (its trained weights and its average), step 4 ends where it did.
    storage.delete(str(ckpt / "step-000000004"), recursive=True)
    resumed = train(tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["start_step"] == 3
    assert all(torch.equal(v, exported[k]) for k, v in resumed.items())


def test_weight_average_turned_on_at_resume_starts_from_the_checkpoint(tmp_path, caplog):
    datasets = _datasets(str(tmp_path / "data"))
    ckpt = tmp_path / "ckpt"
    # Two steps without an average, then resumed with one that should have started at step 1.
    _train_in_process(tmp_path, datasets, tmp_path / "plain", 2)
    with caplog.at_level(logging.WARNING):
        exported = _train_in_process(
            tmp_path, datasets, tmp_path / "averaged", 4, optim__ema_decay=0.5, optim__ema_start=1
        )
    assert "holds no weight average" in caplog.text and "at step 2" in caplog.text
    w = {2: load_file(ckpt / "step-000000002" / "model.safetensors")}
    for s in (3, 4):
        w[s] = load_file(ckpt / f"step-{s:09d}" / "training_weights.safetensors")
    name = "image_aligner.proj.weight"
    torch.testing.assert_close(
        exported[name], 0.25 * w[2][name] + 0.25 * w[3][name] + 0.5 * w[4][name]
    )


def test_scheduled_disentanglement_weight_is_the_one_the_loss_used(tmp_path):
    datasets = _datasets(str(tmp_path / "data"))
    out = tmp_path / "run"
    _train_in_process(
        tmp_path, datasets, out, 4, optim__dis_weight_start=1.0, optim__dis_weight_steps=2
    )
    rows = _metrics(out)
    c = DenseAVConfig()  # the tiny preset keeps the paper's loss weights
    # Logged at steps done 1-4: the weights of optimizer steps 0-3.
    assert [rows[s]["dis_weight"] for s in (1, 2, 3, 4)] == pytest.approx([1.0, 0.525, 0.05, 0.05])
    for row in rows.values():
        total = row["loss/a2v"] + row["loss/v2a"] + row["dis_weight"] * row["loss/dis"] + sum(
            getattr(c, f"{name}_weight") * row[f"loss/{name}"]
            for name in ("splice", "silence", "cal", "nonneg", "tv")
        )
        assert row["loss"] == pytest.approx(total, rel=1e-5)
    assert rows[1]["loss/dis"] > 0  # the weighted term is really there


def test_help_and_config_errors(capsys, tmp_path):
    from trainer.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--optim.lr" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"datasets": [{"url": "/x"}]}, "optim": {"lr": 0}}))
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(bad)])
    assert exit_.value.code == 2
    assert "optim.lr=0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", str(bad), "--lr", "1e-4", "--model.preset", "huge"])
    assert "model.preset='huge'" in capsys.readouterr().err
    # Problems found on start name what to fix: a dataset without an index, a torn checkpoint.
    config = _config(
        tmp_path / "c.yaml", [{"url": str(tmp_path / "nothing")}], tmp_path / "o", str(tmp_path)
    )
    with pytest.raises(SystemExit):
        main(["--config", str(config)])
    assert f"data.datasets: no dataset index at {tmp_path / 'nothing'}" in capsys.readouterr().err
    (tmp_path / "step-000000005").mkdir()
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--resume", str(tmp_path / "step-000000005")])
    assert "COMPLETE marker missing" in capsys.readouterr().err


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc): the launcher, the ranks, their data workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _kill_tree(pid: int) -> None:
    """SIGKILL every process of the run at once, as a machine failure would."""
    for member in _process_tree(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"run ended (code {proc.returncode}) before the checkpoint appeared"
            )
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the checkpoint")


@pytest.mark.slow
def test_kill_and_resume_from_s3_repeats_the_uninterrupted_run(tmp_path, s3_server):
    base = s3_server.fresh_url("trainer-resume")
    datasets = _datasets(storage.join(base, "data"))
    top = {"steps": 10, "warmup_aligner_steps": 3, "checkpoint__every": 2, "checkpoint__keep": 2}

    ref_out = tmp_path / "reference"
    ref_cfg = _config(
        tmp_path / "ref.yaml", datasets, ref_out, storage.join(base, "ref-ckpt"), **top
    )
    _launch_to_completion(ref_cfg, tmp_path)
    reference = _metrics(ref_out)
    assert sorted(reference) == list(range(1, 11))

    ckpt = storage.join(base, "ckpt")
    out = tmp_path / "interrupted"
    cfg = _config(tmp_path / "cfg.yaml", datasets, out, ckpt, **top)
    proc = subprocess.Popen(
        _launch_cmd(cfg),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(
            lambda: storage.exists(storage.join(ckpt, "step-000000004", "COMPLETE")), 600, proc
        )
        assert proc.poll() is None, "the run finished before it could be interrupted"
    finally:
        _kill_tree(proc.pid)  # the launcher, both ranks and their data workers
        proc.wait()
    # A torn checkpoint newer than every complete one (as a kill during saving leaves behind).
    storage.write_bytes(storage.join(ckpt, "step-000000009", "rank-0.pt"), b"torn")
    interrupted = _metrics(out)
    last_complete = max(
        int(n[5:14])
        for n in storage.listdir(ckpt)
        if n.startswith("step-") and storage.exists(storage.join(ckpt, n, "COMPLETE"))
    )
    assert 4 <= last_complete < 10

    resumed_out = tmp_path / "resumed"
    _launch_to_completion(cfg, tmp_path, "--resume", "latest", "--output_dir", str(resumed_out))
    run = json.loads((resumed_out / "run.json").read_text())
    assert run["world_size"] == 2 and run["start_step"] == last_complete
    assert run["resumed_from"].endswith(f"step-{last_complete:09d}")
    resumed = _metrics(resumed_out)
    assert sorted(resumed) == list(range(last_complete + 1, 11))
    loss_keys = [k for k in reference[1] if k == "loss" or k.startswith("loss/")]
    for step in range(1, 11):
        row = resumed.get(step) or interrupted[step]
        for key in loss_keys + ["inverse_temperature", "lr/aligners", "phase"]:
            assert row[key] == reference[step][key], (step, key, row[key], reference[step][key])
    assert not storage.exists(storage.join(ckpt, "step-000000009", "rank-0.pt"))  # torn one removed
    # keep = 2 (S3 servers may list a deleted folder as an empty prefix: count folders with files)
    kept = [n for n in storage.listdir(ckpt) if storage.listdir(storage.join(ckpt, n))]
    assert kept == ["step-000000008/", "step-000000010/"]
