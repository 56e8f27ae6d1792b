"""Every training option: nested dataclasses loaded from YAML, overridden from the command line.

A run is configured by one YAML file whose top-level sections mirror :class:`TrainConfig`
(``model``, ``data``, ``optim``, ``checkpoint``, ``logging`` plus a few top-level keys) and by
``--key value`` overrides. Keys may be dotted (``--optim.lr 1e-4``) or, when the name is unique
across sections, bare (``--lr 1e-4``). Values are converted by the type of the field they set and
checked on start; every error names the key, the value and the file it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer.scheduler import DECAYS


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class DatasetSpec:
    """One training corpus: an index or a shard folder, and its share of every batch."""

    url: str = _help("Dataset location: a local folder or s3://bucket/prefix holding index.json.")
    weight: float = _help("Relative share of each batch taken from this dataset.", default=1.0)
    name: str = _help("Name used in logs (default: the name in the dataset's index).", default="")


@dataclass
class DataConfig:
    datasets: list[DatasetSpec] = _help(
        "Training datasets, a list of {url, weight, name} (url: a folder or s3:// prefix with "
        "index.json); mixed by weight, each batch split between them in proportion.",
        default_factory=list,
    )
    batch_size: int = _help(
        "Samples per process per step (global batch = this x processes).", default=10
    )
    num_workers: int = _help("Data-loading worker processes per training process.", default=2)
    shuffle_buffer: int = _help("Samples held for shuffling by each reader.", default=1000)
    image_size: int = _help("Side of the square training crop (pixels).", default=224)
    crop_scale_min: float = _help("RandomResizedCrop: smallest crop area fraction.", default=0.08)
    crop_scale_max: float = _help("RandomResizedCrop: largest crop area fraction.", default=1.0)
    hflip_p: float = _help("Probability of a horizontal flip.", default=0.5)
    color_jitter: float = _help(
        "ColorJitter strength for brightness/contrast/saturation/hue.", default=0.2
    )
    color_jitter_p: float = _help("Probability of applying ColorJitter.", default=1.0)
    grayscale_p: float = _help("RandomGrayscale probability.", default=0.1)
    audio_speed: float = _help(
        "Audio speed perturbation: rate factor uniform in [1 - s, 1 + s] (0: off, the paper).",
        default=0.0,
    )
    audio_noise: float = _help(
        "Additive white noise: std uniform in [0, x] times the clip's std (0: off, the paper).",
        default=0.0,
    )
    splice: bool = _help(
        "Splice a negative audio piece of another clip into every clip.", default=True
    )
    splice_min_seconds: float = _help("Shortest spliced negative piece (seconds).", default=1.0)
    splice_max_seconds: float = _help("Longest spliced negative piece (seconds).", default=4.0)
    splice_max_fraction: float | None = _help(
        "Cap on a piece's length as a fraction of the clip's own audio (null: no cap, the "
        "published code). 0.4 keeps the published 4 s in 10 s on clips shorter than 10 s.",
        default=None,
    )
    splice_probability: float = _help(
        "Chance that a clip gets a negative piece (1: every clip; 0 splices nothing, like "
        "splice: false).",
        default=1.0,
    )


@dataclass
class OptimConfig:
    lr: float = _help("AdamW learning rate (after warm-up).", default=5e-5)
    beta1: float = _help("AdamW beta1.", default=0.9)
    beta2: float = _help("AdamW beta2.", default=0.999)
    eps: float = _help("AdamW epsilon.", default=1e-8)
    weight_decay: float = _help(
        "Decoupled (AdamW) weight decay of weight matrices and kernels; the inverse temperature,"
        " biases and normalisation gains never decay.",
        default=0.0,
    )
    warmup_steps: int = _help(
        "Linear learning-rate warm-up at the start of each phase (steps).", default=1000
    )
    decay: str = _help(
        "Learning rate after warm-up: 'constant', or 'cosine' (from the start of phase 2 down to 0"
        " at the last step).",
        default="constant",
    )
    clip_grad: float = _help("Per-tensor gradient-norm clip (0 disables).", default=10.0)
    grad_accum: int = _help("Micro-batches accumulated per optimizer step.", default=1)
    ema_decay: float = _help(
        "Exponential moving average of the weights (trainer/averaging.py), e.g. 0.999; the "
        "exported model and each checkpoint's model.safetensors hold the average (0: off, the "
        "paper).",
        default=0.0,
    )
    ema_start: int = _help(
        "Optimizer step at which the weight average starts, as a copy of the weights.", default=0
    )
    dis_weight_start: float | None = _help(
        "Disentanglement weight at step 0, falling linearly to the model's dis_weight at step "
        "optim.dis_weight_steps (null: the model's dis_weight throughout, the paper).",
        default=None,
    )
    dis_weight_steps: int = _help(
        "Steps over which the disentanglement weight falls from optim.dis_weight_start.",
        default=0,
    )


@dataclass
class CheckpointConfig:
    dir: str = _help(
        "Checkpoint root: a local folder or s3://bucket/prefix.", default="outputs/checkpoints"
    )
    every: int = _help(
        "Save a checkpoint every this many steps (0: only at the end).", default=1000
    )
    keep: int = _help("Number of most recent complete checkpoints kept.", default=3)
    resume: str = _help("'latest', a checkpoint path/URL, or '' to start fresh.", default="")
    export_dir: str = _help(
        "Where the final model is exported with save_pretrained ('' : <output_dir>/final_model).",
        default="",
    )


@dataclass
class LoggingConfig:
    every: int = _help("Log scalars every this many steps.", default=10)
    trackers: list[str] = _help(
        "Accelerate trackers (tensorboard, wandb, ...; [] for none).",
        default_factory=lambda: ["tensorboard"],
    )
    project: str = _help("Tracker project/run name.", default="denseav")
    progress: bool = _help("Show a tqdm progress bar on the main process.", default=True)
    record_samples: bool = _help(
        "Every process writes the sample keys of each step to samples-rank{r}.jsonl.", default=False
    )


@dataclass
class TrainConfig:
    model: dict = _help(
        "DenseAVConfig fields; 'preset' picks a named preset that the other keys override.",
        default_factory=lambda: {"preset": "paper"},
    )
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    steps: int = _help("Optimizer steps in total (both phases).", default=10000)
    warmup_aligner_steps: int = _help("Phase-1 steps: aligners and temperature only.", default=3000)
    mixed_precision: str = _help("'no', 'bf16' or 'fp16' (fp16 needs a GPU).", default="no")
    seed: int = _help(
        "Seed of the model initialisation, data order, augmentation and splicing.", default=0
    )
    output_dir: str = _help("Local folder for logs and the exported model.", default="outputs/run")


_SECTIONS = ("data", "optim", "checkpoint", "logging")
_PRECISIONS = ("no", "bf16", "fp16")


# --------------------------------------------------------------------------- conversion


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or value == "null":
            return None
        return _convert(value, args[0], where)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else []
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def _unknown_key(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    full = f"{where}.{key}" if where else key
    return ConfigError(f"unknown key {full!r}{hint}; known keys here: {', '.join(sorted(known))}")


def _build(cls: type, values: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown_key(str(key), names, where)
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


# --------------------------------------------------------------------------- validation


def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {why}")


def validate(cfg: TrainConfig) -> None:
    """Check values that types cannot; raise :class:`ConfigError` naming the key and value."""
    d, o, c, lg = cfg.data, cfg.optim, cfg.checkpoint, cfg.logging
    _check(len(d.datasets) > 0, "data.datasets", d.datasets, "at least one dataset is needed")
    for i, ds in enumerate(d.datasets):
        _check(bool(ds.url), f"data.datasets[{i}].url", ds.url, "a dataset location is needed")
        _check(ds.weight > 0, f"data.datasets[{i}].weight", ds.weight, "must be > 0")
    _check(d.batch_size >= 1, "data.batch_size", d.batch_size, "must be >= 1")
    _check(
        d.batch_size >= len(d.datasets),
        "data.batch_size",
        d.batch_size,
        f"must be >= the number of datasets ({len(d.datasets)}) so each gets a share",
    )
    _check(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    _check(d.shuffle_buffer >= 1, "data.shuffle_buffer", d.shuffle_buffer, "must be >= 1")
    _check(d.image_size >= 8, "data.image_size", d.image_size, "must be >= 8")
    _check(
        0 < d.crop_scale_min <= d.crop_scale_max <= 1,
        "data.crop_scale_min",
        (d.crop_scale_min, d.crop_scale_max),
        "need 0 < crop_scale_min <= crop_scale_max <= 1",
    )
    for key in ("hflip_p", "color_jitter_p", "grayscale_p", "splice_probability"):
        value = getattr(d, key)
        _check(0 <= value <= 1, f"data.{key}", value, "a probability must be in [0, 1]")
    _check(0 <= d.color_jitter <= 0.5, "data.color_jitter", d.color_jitter, "must be in [0, 0.5]")
    _check(0 <= d.audio_speed < 1, "data.audio_speed", d.audio_speed, "must be in [0, 1)")
    _check(d.audio_noise >= 0, "data.audio_noise", d.audio_noise, "must be >= 0")
    _check(
        0 < d.splice_min_seconds <= d.splice_max_seconds,
        "data.splice_min_seconds",
        (d.splice_min_seconds, d.splice_max_seconds),
        "need 0 < splice_min_seconds <= splice_max_seconds",
    )
    _check(
        d.splice_max_seconds < 10,
        "data.splice_max_seconds",
        d.splice_max_seconds,
        "must be shorter than a 10 s clip",
    )
    _check(
        d.splice_max_fraction is None or 0 < d.splice_max_fraction < 1,
        "data.splice_max_fraction",
        d.splice_max_fraction,
        "must be null or in (0, 1)",
    )
    _check(o.lr > 0, "optim.lr", o.lr, "must be > 0")
    _check(o.decay in DECAYS, "optim.decay", o.decay, f"choose from {DECAYS}")
    _check(
        0 <= o.beta1 < 1 and 0 <= o.beta2 < 1,
        "optim.beta1/beta2",
        (o.beta1, o.beta2),
        "must be in [0, 1)",
    )
    _check(o.eps > 0, "optim.eps", o.eps, "must be > 0")
    _check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    _check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, "must be >= 0")
    _check(o.clip_grad >= 0, "optim.clip_grad", o.clip_grad, "must be >= 0 (0 disables)")
    _check(o.grad_accum >= 1, "optim.grad_accum", o.grad_accum, "must be >= 1")
    _check(0 <= o.ema_decay < 1, "optim.ema_decay", o.ema_decay, "must be in [0, 1) (0 disables)")
    _check(o.ema_start >= 0, "optim.ema_start", o.ema_start, "must be >= 0")
    _check(
        o.dis_weight_start is None or o.dis_weight_start >= 0,
        "optim.dis_weight_start",
        o.dis_weight_start,
        "must be null or >= 0",
    )
    _check(
        o.dis_weight_start is None or o.dis_weight_steps >= 1,
        "optim.dis_weight_steps",
        o.dis_weight_steps,
        "must be >= 1 when optim.dis_weight_start is set",
    )
    _check(c.every >= 0, "checkpoint.every", c.every, "must be >= 0")
    _check(c.keep >= 1, "checkpoint.keep", c.keep, "must be >= 1")
    _check(lg.every >= 1, "logging.every", lg.every, "must be >= 1")
    _check(cfg.steps >= 1, "steps", cfg.steps, "must be >= 1")
    _check(
        cfg.warmup_aligner_steps >= 0,
        "warmup_aligner_steps",
        cfg.warmup_aligner_steps,
        "must be >= 0",
    )
    _check(
        cfg.mixed_precision in _PRECISIONS,
        "mixed_precision",
        cfg.mixed_precision,
        f"must be one of {', '.join(_PRECISIONS)}",
    )
    _check(isinstance(cfg.model, dict), "model", cfg.model, "must be a mapping")


# --------------------------------------------------------------------------- loading


def _leaf_paths(cls: type = TrainConfig, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Map every dotted option name to its path of field names."""
    out: dict[str, tuple[str, ...]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if _is_dataclass_type(hints[f.name]):
            for sub, path in _leaf_paths(hints[f.name], f"{name}.").items():
                out[sub] = (f.name, *path)
        else:
            out[name] = (f.name,)
    return out


def _resolve_override(key: str) -> tuple[str, ...]:
    leaves = _leaf_paths()
    if key in leaves:
        return leaves[key]
    if key.startswith("model."):
        return ("model", *key.split(".")[1:])
    matches = [path for name, path in leaves.items() if name.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(".".join(p) for p in matches)
        raise ConfigError(f"--{key} is ambiguous: use one of {names}")
    raise ConfigError(f"command line: {_unknown_key(key, list(leaves), '')}")


def _set_path(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        node = tree.get(part)
        if not isinstance(node, dict):
            node = {}
            tree[part] = node
        tree = node
    tree[path[-1]] = value


def parse_overrides(args: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """``["--optim.lr", "1e-4", "--steps=20"]`` -> ``[(("optim", "lr"), "1e-4"), (("steps",), "20")]``."""
    out = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"command line: expected --key value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"command line: --{arg[2:]} needs a value")
            key, value = arg[2:], args[i + 1]
            i += 2
        out.append((_resolve_override(key.replace("-", "_")), value))
    return out


def _model_value(value: str) -> Any:
    return yaml.safe_load(value)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Load ``path`` (YAML; None for defaults), apply ``--key value`` overrides, validate."""
    raw: dict = {}
    source = str(path) if path else "defaults"
    if path:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of options")
    for keys, value in parse_overrides(overrides or []):
        _set_path(raw, keys, _model_value(value) if keys[0] == "model" else value)
    if overrides:
        source += " with command-line overrides"
    try:
        cfg = _build(TrainConfig, raw, "")
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def to_dict(cfg: TrainConfig) -> dict:
    """A YAML-ready nested dict of ``cfg`` (round-trips through :func:`load_config`)."""
    return dataclasses.asdict(cfg)


def help_text(cls: type = TrainConfig, prefix: str = "") -> str:
    """One line per option: dotted name, type, default and meaning."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            lines.append(help_text(tp, f"{name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        tp_name = getattr(tp, "__name__", str(tp)).replace("typing.", "")
        lines.append(
            f"  --{name} ({tp_name}, default {default!r})\n      {f.metadata.get('help', '')}"
        )
    return "\n".join(lines)
