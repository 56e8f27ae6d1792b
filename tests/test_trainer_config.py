"""Training configuration: YAML + overrides, type conversion, errors that name the key and value."""

import pytest
import yaml

from trainer.params import ConfigError, help_text, load_config, to_dict


def _write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {
    "data": {"datasets": [{"url": "/d/audioset", "weight": 1}, {"url": "/d/places", "weight": 1}]}
}


def test_yaml_and_overrides(tmp_path):
    path = _write(tmp_path, {**BASE, "steps": 50, "optim": {"lr": "1e-4"}})
    cfg = load_config(
        path,
        [
            "--optim.warmup_steps",
            "7",
            "--batch_size=4",
            "--seed",
            "3",
            "--model.preset",
            "tiny",
            "--logging.trackers",
            "[]",
            "--data.splice_max_fraction",
            "0.4",
        ],
    )
    assert cfg.steps == 50 and cfg.optim.lr == 1e-4 and cfg.optim.warmup_steps == 7
    assert cfg.data.batch_size == 4 and cfg.seed == 3
    assert cfg.model == {"preset": "tiny"} or cfg.model["preset"] == "tiny"
    assert cfg.logging.trackers == [] and cfg.data.splice_max_fraction == 0.4
    assert load_config(path).data.splice_max_fraction is None  # the published code: no cap
    assert [d.url for d in cfg.data.datasets] == ["/d/audioset", "/d/places"]
    # Defaults are the paper's.
    assert cfg.warmup_aligner_steps == 3000 and cfg.optim.clip_grad == 10.0
    assert cfg.data.color_jitter == 0.2
    # The dict form round-trips.
    again = load_config(_write(tmp_path, to_dict(cfg), "again.yaml"))
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize(
    "data, overrides, fragments",
    [
        ({**BASE, "optim": {"lrr": 1e-4}}, [], ["optim.lrr", "did you mean 'lr'"]),
        ({**BASE, "stepz": 3}, [], ["'stepz'", "did you mean 'steps'"]),
        (BASE, ["--optim.lr", "fast"], ["optim.lr", "'fast'", "number"]),
        (BASE, ["--batch_size", "2.5"], ["data.batch_size", "2.5", "integer"]),
        (BASE, ["--optim.lr", "-1"], ["optim.lr=-1.0", "> 0"]),
        (BASE, ["--mixed_precision", "fp8"], ["mixed_precision='fp8'", "bf16"]),
        (BASE, ["--optim.decay", "linear"], ["optim.decay='linear'", "cosine"]),
        (BASE, ["--dis_weight_start", "-1"], ["optim.dis_weight_start=-1.0", ">= 0"]),
        (BASE, ["--dis_weight_start", "0.5"], ["optim.dis_weight_steps=0", ">= 1"]),
        (BASE, ["--grayscale_p", "1.5"], ["data.grayscale_p=1.5", "probability"]),
        (BASE, ["--splice_max_fraction", "1.5"], ["data.splice_max_fraction=1.5", "(0, 1)"]),
        (BASE, ["--splice_probability", "-0.1"], ["data.splice_probability=-0.1", "probability"]),
        (BASE, ["--nosuch", "1"], ["'nosuch'"]),
        (BASE, ["--every", "3"], ["ambiguous", "checkpoint.every", "logging.every"]),
        (BASE, ["--steps"], ["--steps needs a value"]),
        ({"data": {"datasets": []}}, [], ["data.datasets", "at least one"]),
        ({"data": {"datasets": [{"url": "/d", "weight": 0}]}}, [], ["data.datasets[0].weight=0.0"]),
        (
            {**BASE, "data": {**BASE["data"], "batch_size": 1}},
            [],
            ["data.batch_size=1", "number of datasets"],
        ),
    ],
)
def test_errors_name_the_key_and_value(tmp_path, data, overrides, fragments):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_help_lists_every_option():
    text = help_text()
    for option in (
        "--optim.lr",
        "--data.batch_size",
        "--warmup_aligner_steps",
        "--checkpoint.resume",
        "--data.splice_max_seconds",
    ):
        assert option in text
