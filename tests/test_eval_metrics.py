"""The evaluation measures against values computed another way."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from evaluation.metrics import (
    act_dis,
    best_threshold_iou,
    binary_average_precision,
    class_segmentation_score,
    mean_class_scores,
    min_max_scale_heads,
    peak_on_mask,
    pred_dis,
    retrieval_ranks,
    retrieval_recall,
)


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels = rng.random(n) < rng.uniform(0.05, 0.9)
    labels[0] = True
    # Seeds 3..5 use few distinct values to exercise ties.
    scores = rng.normal(size=n) if seed < 3 else rng.integers(0, 4, size=n).astype(float)
    assert binary_average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores)
    )


def test_average_precision_invariant_to_monotone_transform():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=300), rng.random(300) < 0.3
    assert binary_average_precision(np.exp(3 * scores) - 7, labels) == pytest.approx(
        binary_average_precision(scores, labels)
    )


def test_average_precision_hand_case_and_errors():
    # Ranking: pos, neg, pos -> precisions 1 and 2/3 at the two recall steps of 1/2.
    assert binary_average_precision([0.9, 0.5, 0.1], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="positive"):
        binary_average_precision([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="elements"):
        binary_average_precision([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        binary_average_precision([0.1, np.nan], [0, 1])


def _brute_force_iou(scores, labels, k=20):
    best = -1.0
    for tau in np.linspace(min(scores), max(scores), k):
        pred = {i for i, s in enumerate(scores) if s >= tau}
        true = {i for i, y in enumerate(labels) if y}
        union = pred | true
        best = max(best, len(pred & true) / len(union) if union else 1.0)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_iou_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(12, 9))
    labels = scores + rng.normal(scale=1.0, size=scores.shape) > 0.5
    iou, tau = best_threshold_iou(scores, labels)
    assert iou == pytest.approx(_brute_force_iou(scores.ravel().tolist(), labels.ravel().tolist()))
    pred = scores >= tau
    assert np.count_nonzero(pred & labels) / np.count_nonzero(pred | labels) == pytest.approx(iou)


def test_best_threshold_iou_perfect_separation():
    scores = np.array([0.0, 0.1, 0.2, 1.0, 1.0])
    assert best_threshold_iou(scores, scores > 0.5)[0] == 1.0


def test_class_score_pools_pixels_of_all_prompts():
    rng = np.random.default_rng(1)
    heatmaps = [rng.normal(size=(4, 5)), rng.normal(size=(6, 3))]
    masks = [h + 0.5 * rng.normal(size=h.shape) > 0 for h in heatmaps]
    score = class_segmentation_score(7, heatmaps, masks)
    pooled_scores = np.concatenate([h.ravel() for h in heatmaps])
    pooled_labels = np.concatenate([m.ravel() for m in masks])
    assert score.ap == pytest.approx(average_precision_score(pooled_labels, pooled_scores))
    assert score.iou == pytest.approx(
        _brute_force_iou(pooled_scores.tolist(), pooled_labels.tolist())
    )
    assert (score.prompts, score.pixels) == (2, 38)
    # Pooling differs from averaging per-prompt APs in general.
    per_prompt = np.mean(
        [average_precision_score(m.ravel(), h.ravel()) for h, m in zip(heatmaps, masks)]
    )
    assert score.ap != pytest.approx(per_prompt, abs=1e-9)


def test_class_score_rejects_class_without_pixels_and_shape_mismatch():
    with pytest.raises(ValueError, match="class 3: no pixel"):
        class_segmentation_score(3, [np.zeros((2, 2))], [np.zeros((2, 2), bool)])
    with pytest.raises(ValueError, match="prompt 0"):
        class_segmentation_score(3, [np.zeros((2, 2))], [np.ones((2, 3), bool)])


def test_peak_on_mask_tells_a_peak_beside_the_object_from_one_on_it():
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    on = np.zeros((6, 6))
    on[3, 2] = 1.0
    beside = np.zeros((6, 6))
    beside[3, 4] = 1.0
    assert peak_on_mask(on, mask) and not peak_on_mask(beside, mask)
    with pytest.raises(ValueError, match=r"heatmap \(6, 6\) vs mask \(6, 5\)"):
        peak_on_mask(on, mask[:, :5])


def test_class_score_pointing_counts_only_prompts_showing_the_class():
    mask = np.array([[True, False, False]])
    hit, miss = np.array([[0.9, 0.1, 0.0]]), np.array([[0.5, 0.9, 0.0]])
    hidden = (np.array([[0.0, 1.0, 0.0]]), np.zeros((1, 3), bool))
    score = class_segmentation_score(4, [hit, miss, hidden[0]], [mask, mask, hidden[1]])
    assert score.pointing == pytest.approx(0.5)
    # A blurred map that still peaks on the object keeps the hit, unlike a sharp one beside it.
    assert class_segmentation_score(4, [np.array([[0.6, 0.5, 0.5]])], [mask]).pointing == 1.0


def test_mean_class_scores_is_plain_mean_over_classes():
    a = class_segmentation_score(1, [np.array([[1.0, 0.0]])], [np.array([[True, False]])])
    b = class_segmentation_score(
        2, [np.array([[1.0, 0.0, 0.5, 0.2]])], [np.array([[False, True, False, False]])]
    )
    means = mean_class_scores([a, b])
    assert means["mAP"] == pytest.approx((1.0 + 0.25) / 2)
    assert means["chance_mAP"] == pytest.approx((0.5 + 0.25) / 2)
    assert means["pointing"] == pytest.approx((1.0 + 0.0) / 2)
    assert means["classes"] == 2


def test_retrieval_hand_built_cases():
    # Audio 0 finds image 0 first; audio 1 ranks image 1 second; audio 2 ranks image 2 third.
    sim = np.array(
        [
            [0.9, 0.1, 0.2],
            [0.8, 0.5, 0.1],
            [0.7, 0.6, 0.3],
        ]
    )
    ranks = retrieval_ranks(sim)
    assert ranks["a2v"].tolist() == [0, 1, 2]
    # Image 0 column: 0.9 is top -> 0. Image 1 column: 0.6 > 0.5 -> 1. Image 2: 0.3 top -> 0.
    assert ranks["v2a"].tolist() == [0, 1, 0]
    r = retrieval_recall(sim, ks=(1, 2, 3))
    assert r["a2v_R@1"] == pytest.approx(1 / 3)
    assert r["a2v_R@2"] == pytest.approx(2 / 3)
    assert r["a2v_R@3"] == 1.0
    assert r["v2a_R@1"] == pytest.approx(2 / 3)
    assert r["v2a_R@2"] == 1.0


def test_retrieval_identity_perfect_and_constant_nothing():
    assert set(retrieval_recall(np.eye(20)).values()) == {1.0}
    assert set(retrieval_recall(np.ones((20, 20))).values()) == {0.0}


def test_retrieval_against_sorting():
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(50, 50)) + 2 * np.eye(50)
    r = retrieval_recall(sim)
    top5 = np.argsort(-sim, axis=1)[:, :5]
    assert r["a2v_R@5"] == pytest.approx(np.mean([i in top5[i] for i in range(50)]))
    top10 = np.argsort(-sim, axis=0)[:10, :]
    assert r["v2a_R@10"] == pytest.approx(np.mean([i in top10[:, i] for i in range(50)]))


def test_disentanglement_hand_worked_example():
    # Clips 0-1 sound, 2-3 language. Head 0 fires on language, head 1 on sound, not cleanly.
    raw = np.array(
        [
            [1.0, 10.0],  # sound
            [2.0, 6.0],  # sound
            [5.0, 2.0],  # language
            [3.0, 4.0],  # language
        ]
    )
    is_sound = np.array([True, True, False, False])
    scaled = min_max_scale_heads(raw)
    np.testing.assert_allclose(scaled[:, 0], [0.0, 0.25, 1.0, 0.5])
    np.testing.assert_allclose(scaled[:, 1], [1.0, 0.5, 0.0, 0.25])
    # ActDis: delta_act(k, d) = 1 - mean of head k on dataset d.
    # head0: sound mean 0.125 -> 0.875, language mean 0.75 -> 0.25
    # head1: sound mean 0.75 -> 0.25, language mean 0.125 -> 0.875
    # assignments: (0,0)+(1,1) = 0.875 + 0.875; (1,0)+(0,1) = 0.25 + 0.25
    assert act_dis(raw, is_sound) == pytest.approx(0.875)
    # PredDis: head 0 ranks the language clips first perfectly -> AP(head0, language) = 1,
    # head 1 ranks sound first perfectly -> AP(head1, sound) = 1; the other pairing is worse.
    assert pred_dis(raw, is_sound) == pytest.approx(1.0)
    # The metrics are invariant to swapping the heads.
    assert pred_dis(raw[:, ::-1], is_sound) == pytest.approx(1.0)
    assert act_dis(raw[:, ::-1], is_sound) == pytest.approx(0.875)


def test_disentanglement_entangled_heads_score_half():
    rng = np.random.default_rng(0)
    same = rng.random(400)
    raw = np.stack([same, same], axis=1)
    is_sound = np.arange(400) % 2 == 0
    assert act_dis(raw, is_sound) == pytest.approx(0.5, abs=0.05)
    assert pred_dis(raw, is_sound) == pytest.approx(0.5, abs=0.06)


def test_pred_dis_matches_sklearn_assignment():
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(60, 2))
    is_sound = rng.random(60) < 0.5
    lo, hi = raw.min(0), raw.max(0)
    scaled = (raw - lo) / (hi - lo)
    labels = [is_sound, ~is_sound]
    best = max(
        sum(average_precision_score(labels[d], scaled[:, k]) for k, d in zip((0, 1), perm))
        for perm in itertools.permutations((0, 1))
    )
    assert pred_dis(raw, is_sound) == pytest.approx(best / 2)


def test_disentanglement_input_errors():
    with pytest.raises(ValueError, match="both datasets"):
        pred_dis(np.ones((3, 2)), np.array([True, True, True]))
    with pytest.raises(ValueError, match="two heads"):
        act_dis(np.random.default_rng(0).random((4, 3)), np.array([True, False, True, False]))
