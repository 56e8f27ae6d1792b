"""Retrieval and disentanglement commands over shards datasets and prompted folders."""

import json

import numpy as np
import pytest
import torch

from denseav.config import DenseAVConfig
from denseav.model import DenseAV
from evaluation.__main__ import main
from evaluation.metrics import retrieval_hubs
from evaluation.pairs import count_pairs, iter_pairs
from evaluation.report import retrieval_markdown
from evaluation.retrieval import EncodedPool, evaluate_retrieval, similarity_matrix
from shards.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def tiny_model() -> DenseAV:
    torch.manual_seed(0)
    return DenseAV(DenseAVConfig.tiny()).eval()


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    return tiny_model.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def shards_dataset(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("shards") / "places")
    keys = write_synthetic_dataset(
        url, num_shards=2, samples_per_shard=6, frame_size=(32, 32), num_frames=3
    )
    return url, keys


def _pool(audio: torch.Tensor, image: torch.Tensor) -> EncodedPool:
    n, c = audio.shape[:2]
    return EncodedPool(
        image=image,
        image_cls=torch.zeros(n, c),
        audio=audio,
        audio_mask=torch.ones(n, audio.shape[-1]),
        audio_cls=torch.zeros(n, c),
        keys=[str(i) for i in range(n)],
    )


def test_similarity_matrix_rows_are_audio_and_columns_images(tiny_model):
    rng = torch.Generator().manual_seed(0)
    audio, image = torch.randn(5, 32, 3, generator=rng), torch.randn(5, 32, 2, 2, generator=rng)
    sim = similarity_matrix(tiny_model, _pool(audio, image), block=2)
    for i in range(5):
        for j in range(5):
            expected = tiny_model.similarity(audio[i : i + 1], image[j : j + 1], torch.ones(1, 3))
            assert sim[i, j] == pytest.approx(expected.item(), rel=1e-5)


def test_retrieval_of_matching_features_is_perfect(tiny_model):
    # Clip i's audio and image share one-hot channel i: the diagonal wins every row and column.
    eye = torch.eye(32)[:8]
    pool = _pool(eye[:, :, None].repeat(1, 1, 3), eye[:, :, None, None].repeat(1, 1, 2, 2))
    result = evaluate_retrieval(tiny_model, pool)
    assert set(result["recall"].values()) == {1.0}
    assert result["median_rank"] == {"a2v": 1.0, "v2a": 1.0}
    assert result["queries"]["a2v"][3] == {"key": "3", "rank": 1, "top": "3"}
    # Shuffling the images breaks the pairs: R@1 drops to 0.
    shuffled = _pool(pool.audio, pool.image[torch.roll(torch.arange(8), 1)])
    result = evaluate_retrieval(tiny_model, shuffled)
    assert result["recall"]["a2v_R@1"] == 0.0
    # Image j now holds channel j - 1: audio i finds it in image i + 1, image j in audio j - 1.
    a2v, v2a = result["queries"]["a2v"], result["queries"]["v2a"]
    assert [q["top"] for q in a2v] == [str((i + 1) % 8) for i in range(8)]
    assert [q["top"] for q in v2a] == [str((j - 1) % 8) for j in range(8)]
    assert all(q["rank"] > 1 for q in a2v + v2a)
    assert result["hubs"] == {"a2v": [], "v2a": []}  # every miss went to a different candidate


def test_a_candidate_that_outscores_every_partner_is_reported_as_a_hub():
    # Image 0 scores 5 with every other audio and 4 with its own, the other partners 1: audios
    # 1-5 retrieve image 0 first, and image 0 retrieves audio 1 (the first of its 5s).
    sim = np.eye(6)
    sim[:, 0] = 5.0
    sim[0, 0] = 4.0
    hubs = retrieval_hubs(sim)
    assert hubs["a2v"] == [(0, 5)]
    assert hubs["v2a"] == []  # one image query missed: fewer than two queries
    assert retrieval_hubs(sim, least=1)["v2a"] == [(1, 1)]


def test_pairs_from_shards_use_middle_frame_and_valid_audio(shards_dataset):
    url, keys = shards_dataset
    pairs = list(iter_pairs(url, limit=5))
    assert [p.key for p in pairs] == keys[:5]
    assert all(6 * 16000 <= len(p.audio) <= 160000 for p in pairs)
    assert pairs[0].image.shape == (32, 32, 3)
    assert count_pairs(url) == 12


def test_retrieval_command_on_shards(model_dir, shards_dataset, tmp_path):
    url, _ = shards_dataset
    out = tmp_path / "out"
    assert (
        main(
            [
                "retrieval",
                "--model",
                str(model_dir),
                "--data",
                url,
                "--pool",
                "10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "retrieval.json").read_text())
    assert report["pool"] == 10
    assert set(report["recall"]) == {f"{d}_R@{k}" for d in ("a2v", "v2a") for k in (1, 5, 10)}
    assert report["recall"]["a2v_R@10"] == 1.0  # 10-way: the true partner is always in the top 10
    queries = report["queries"]["v2a"]
    assert len(queries) == 10 and all(1 <= q["rank"] <= 10 for q in queries)
    summary = (out / "retrieval.md").read_text()
    assert "R@10" in summary
    # Every query whose partner is not first is listed with what was retrieved instead.
    for q in report["queries"]["a2v"]:
        assert (f"| {q['key']} | {q['rank']} | {q['top']} |" in summary) == (q["rank"] > 1)


def test_disentanglement_command(model_dir, shards_dataset, tmp_path):
    url, _ = shards_dataset
    out = tmp_path / "out"
    assert (
        main(
            [
                "disentanglement",
                "--model",
                str(model_dir),
                "--sound-data",
                url,
                "--speech-data",
                url,
                "--clips",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "disentanglement.json").read_text())
    assert report["clips"] == {"sound": 4, "language": 4}
    # The same clips on both sides cannot be told apart: PredDis is at chance.
    assert report["PredDis"] == pytest.approx(0.5, abs=0.15)
    assert 0.0 <= report["ActDis"] <= 1.0


def test_disentanglement_refuses_one_head_model(tmp_path, shards_dataset):
    url, _ = shards_dataset
    torch.manual_seed(0)
    one_head = DenseAV(DenseAVConfig.tiny(heads=1)).save_pretrained(tmp_path / "one")
    with pytest.raises(SystemExit, match="two-head"):
        main(
            [
                "disentanglement",
                "--model",
                str(one_head),
                "--sound-data",
                url,
                "--speech-data",
                url,
                "--out",
                str(tmp_path / "out"),
            ]
        )


def test_clip_order_is_stable(shards_dataset):
    url, _ = shards_dataset
    first = [p.key for p in iter_pairs(url)]
    assert first == [p.key for p in iter_pairs(url)]
    assert np.array_equal(next(iter_pairs(url)).audio, next(iter_pairs(url)).audio)


def test_missing_data_is_a_clear_error(model_dir, tmp_path, capsys):
    args = ["retrieval", "--model", str(model_dir), "--data", str(tmp_path / "nowhere")]
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_retrieval_summary_lists_at_most_twenty_misses_per_direction():
    hit = [{"key": f"q{i}", "rank": 1, "top": f"q{i}"} for i in range(30)]
    missed = [{"key": f"q{i}", "rank": 2, "top": "q0"} for i in range(1, 26)]
    report = {
        "pool": 30,
        "model": "m",
        "data": "d",
        "aggregation": "multihead",
        "recall": {f"{d}_R@{k}": 0.5 for d in ("a2v", "v2a") for k in (1, 5, 10)},
        "median_rank": {"a2v": 1.0, "v2a": 1.0},
        "chance": {f"R@{k}": k / 30 for k in (1, 5, 10)},
        "queries": {"a2v": hit[:5] + missed, "v2a": hit},
        "hubs": {"a2v": [{"key": "q0", "queries": 25}], "v2a": []},
    }
    summary = retrieval_markdown(report)
    assert "audio -> image: 25 queries whose partner is not ranked first (the first 20)" in summary
    assert "Retrieved first in place of the partner most often: `q0` (25 queries)" in summary
    assert summary.count("| 2 | q0 |") == 20
    assert "image -> audio:" not in summary  # no misses, no section
