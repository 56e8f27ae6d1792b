"""The paper's evaluation measures as plain functions of scores and labels (no model in here).

- Prompted segmentation (paper section 4.2-4.3): binary average precision of per-pixel
  activations against a class mask, and IoU at the best of 20 evenly spaced thresholds between
  the class's smallest and largest activation; pixels of all prompts of a class are pooled, then
  the per-class scores are averaged (mAP, mIoU). Beside them, a diagnostic the paper does not
  report: the pointing game (the fraction of prompts whose heatmap peaks on the class's pixels).
- Cross-modal retrieval (section 4.4): recall at 1/5/10 in both directions from an N x N
  similarity matrix whose diagonal holds the true pairs.
- Disentanglement (section 4.5): PredDis and ActDis, paper eq. 6-8.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = 20


def _as_1d(x: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(x).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(
            f"{name} holds {np.count_nonzero(~np.isfinite(arr))} NaN or infinite values"
        )
    return arr


def binary_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary average precision: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds.

    This is the AP(., .) of paper eq. 6 and the AP of sections 4.2-4.3: the area under the
    precision-recall step curve, with tied scores forming one threshold (the same definition as
    scikit-learn's ``average_precision_score``). It is unchanged by any strictly increasing
    transform of the scores, which is why the paper prefers it for comparing raw inner products.

    Args:
        scores: any shape, predictions (higher = more positive).
        labels: same number of elements, truthy = positive.
    Returns:
        AP in ``[0, 1]``.
    Raises:
        ValueError: shapes differ, or there is no positive label (AP is undefined).
    """
    s = _as_1d(scores, "scores").astype(np.float64)
    y = _as_1d(labels, "labels").astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores has {s.size} elements but labels has {y.size}")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("average precision is undefined without a positive label")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Last index of every run of equal scores: each distinct score is one threshold.
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    true_pos = np.cumsum(y)[ends]
    predicted = ends + 1
    precision = true_pos / predicted
    recall_steps = np.diff(np.r_[0, true_pos]) / n_pos
    return float(np.sum(recall_steps * precision))


def best_threshold_iou(
    scores: np.ndarray, labels: np.ndarray, num_thresholds: int = IOU_THRESHOLDS
) -> tuple[float, float]:
    """IoU of ``scores >= tau`` with the mask, at the best of ``num_thresholds`` thresholds.

    Paper section 4.2: "we evaluate 20 uniformly spaced thresholds between the smallest and
    largest activations" and report the best, so mIoU is, like mAP, free of a calibration choice.
    ``tau`` runs over ``linspace(min(scores), max(scores), num_thresholds)``.

    Args:
        scores: any shape. labels: same number of elements, truthy = inside the mask.
    Returns:
        ``(best IoU, its threshold)``. A union of zero (no positive label and nothing
        predicted) counts as IoU 1, as in the published code.
    """
    s = _as_1d(scores, "scores").astype(np.float64)
    y = _as_1d(labels, "labels").astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores has {s.size} elements but labels has {y.size}")
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
    best_iou, best_tau = -1.0, float(s.min())
    for tau in np.linspace(s.min(), s.max(), num_thresholds):
        pred = s >= tau
        union = np.count_nonzero(pred | y)
        iou = np.count_nonzero(pred & y) / union if union else 1.0
        if iou > best_iou:
            best_iou, best_tau = iou, float(tau)
    return float(best_iou), best_tau


def peak_on_mask(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Pointing-game hit: the heatmap's highest pixel (the first in raster order on a tie) lies
    inside the mask.

    AP and IoU pool every pixel, so they cannot tell a heatmap that peaks beside its object from
    one that is merely blurred; this can.

    Args:
        heatmap: ``(H, W)`` activations. mask: ``(H, W)``, truthy = the prompted class.
    """
    if np.shape(heatmap) != np.shape(mask):
        raise ValueError(f"heatmap {np.shape(heatmap)} vs mask {np.shape(mask)}")
    return bool(np.asarray(mask).reshape(-1)[int(np.argmax(heatmap))])


@dataclass(frozen=True)
class ClassScore:
    """Segmentation scores of one class over the pooled pixels of all its prompts."""

    class_id: int
    ap: float
    iou: float
    iou_threshold: float
    prompts: int
    pixels: int
    positive_fraction: float
    pointing: float  # fraction of the prompts showing the class whose heatmap peaks on it


def class_segmentation_score(
    class_id: int, heatmaps: Iterable[np.ndarray], masks: Iterable[np.ndarray]
) -> ClassScore:
    """Pool the pixels of all prompts of one class, then AP and best-threshold IoU (sec. 4.2).

    Args:
        heatmaps: per prompt, activations ``(H_i, W_i)``. masks: per prompt, bool ``(H_i, W_i)``.
    """
    heatmaps, masks = list(heatmaps), list(masks)
    if len(heatmaps) != len(masks) or not heatmaps:
        raise ValueError(f"class {class_id}: {len(heatmaps)} heatmaps for {len(masks)} masks")
    for i, (h, m) in enumerate(zip(heatmaps, masks)):
        if np.shape(h) != np.shape(m):
            raise ValueError(
                f"class {class_id}, prompt {i}: heatmap {np.shape(h)} vs mask {np.shape(m)}"
            )
    scores = np.concatenate([np.asarray(h, dtype=np.float64).reshape(-1) for h in heatmaps])
    labels = np.concatenate([np.asarray(m, dtype=bool).reshape(-1) for m in masks])
    if not labels.any():
        raise ValueError(
            f"class {class_id}: no pixel of the class is visible in any of its prompts"
        )
    iou, tau = best_threshold_iou(scores, labels)
    hits = [peak_on_mask(h, m) for h, m in zip(heatmaps, masks) if np.any(m)]
    return ClassScore(
        class_id=int(class_id),
        ap=binary_average_precision(scores, labels),
        iou=iou,
        iou_threshold=tau,
        prompts=len(heatmaps),
        pixels=int(labels.size),
        positive_fraction=float(labels.mean()),
        pointing=float(np.mean(hits)),
    )


def mean_class_scores(per_class: Sequence[ClassScore]) -> dict[str, float]:
    """mAP and mIoU: plain means over classes (each class counts once, sec. 4.2).

    Also the chance level of mAP (the mean positive fraction: a random heatmap's expected AP) and
    the mean pointing-game hit rate over classes.
    """
    if not per_class:
        raise ValueError("no class to average over")
    return {
        "mAP": float(np.mean([c.ap for c in per_class])),
        "mIoU": float(np.mean([c.iou for c in per_class])),
        "chance_mAP": float(np.mean([c.positive_fraction for c in per_class])),
        "pointing": float(np.mean([c.pointing for c in per_class])),
        "classes": len(per_class),
    }


def retrieval_ranks(similarity: np.ndarray) -> dict[str, np.ndarray]:
    """Rank of the true partner for every query, both directions (0 = retrieved first).

    ``similarity[i, j]`` scores audio ``i`` against image ``j``; pair ``i`` is ``(i, i)``.
    Ties count against the query: the rank is the number of *other* candidates scoring at least
    as high as the true one, so a constant similarity retrieves nothing.

    Returns:
        ``{"a2v": (N,), "v2a": (N,)}`` integer ranks. ``a2v``: audio query, image candidates.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be square (N, N), got {sim.shape}")
    true = np.diag(sim)
    others = ~np.eye(sim.shape[0], dtype=bool)
    a2v = ((sim >= true[:, None]) & others).sum(axis=1)
    v2a = ((sim >= true[None, :]) & others).sum(axis=0)
    return {"a2v": a2v, "v2a": v2a}


def retrieval_hubs(similarity: np.ndarray, least: int = 2) -> dict[str, list[tuple[int, int]]]:
    """Candidates retrieved first in place of the true partner by ``least`` or more queries.

    A candidate that many queries rank above their own partners scores high against everything
    (a hub); its count is how many of a direction's R@1 misses it takes.

    Returns:
        ``{"a2v": [(candidate index, queries), ...], "v2a": [...]}``, most queries first.
    """
    sim = np.asarray(similarity)
    own = np.arange(sim.shape[0])
    hubs = {}
    for direction, top in (("a2v", sim.argmax(axis=1)), ("v2a", sim.argmax(axis=0))):
        counts = np.bincount(top[top != own], minlength=len(own))
        order = np.argsort(-counts, kind="stable")
        hubs[direction] = [(int(j), int(counts[j])) for j in order if counts[j] >= least]
    return hubs


def retrieval_recall(similarity: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Cross-modal retrieval accuracy at k (paper sec. 4.4, Table 2), both directions.

    Returns:
        ``{"a2v_R@1": ..., "v2a_R@1": ..., ...}``: the fraction of queries whose true partner is
        among the top k candidates (see :func:`retrieval_ranks` for ties).
    """
    ranks = retrieval_ranks(similarity)
    return {
        f"{direction}_R@{k}": float(np.mean(r < k)) for k in ks for direction, r in ranks.items()
    }


def min_max_scale_heads(head_scores: np.ndarray) -> np.ndarray:
    """``S_hat(a, v)_k``: each head's clip scores min-max scaled to ``[0, 1]`` (paper sec. 4.5).

    Args:
        head_scores: ``(B, K)``, clip-level similarity per head over the clips of *both* datasets.
    """
    s = np.asarray(head_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"head_scores must be (B, K), got {s.shape}")
    lo, hi = s.min(axis=0), s.max(axis=0)
    return (s - lo) / np.where(hi > lo, hi - lo, 1.0)


def _best_assignment(delta: np.ndarray) -> float:
    """Paper eq. 7: ``1/2 max(delta(0,0) + delta(1,1), delta(1,0) + delta(0,1))``."""
    return 0.5 * max(delta[0, 0] + delta[1, 1], delta[1, 0] + delta[0, 1])


def _dataset_indicators(is_sound: np.ndarray) -> list[np.ndarray]:
    sound = _as_1d(is_sound, "is_sound").astype(bool)
    if sound.all() or not sound.any():
        raise ValueError("disentanglement needs clips of both datasets (sound and language)")
    return [sound, ~sound]


def pred_dis(head_scores: np.ndarray, is_sound: np.ndarray) -> float:
    """PredDis (paper eq. 6-7): how well each head's scores predict the clip's dataset.

    ``delta_pred(k, k') = AP(S_hat_k, l[k'])`` with ``l[0]`` = "from the sound dataset" and
    ``l[1]`` = "from the language dataset"; the best of the two head-to-dataset assignments,
    halved. 50% for entangled heads, 100% when either head separates the datasets perfectly.

    Args:
        head_scores: ``(B, 2)`` raw per-head clip similarities (scaled here).
        is_sound: ``(B,)`` True for clips of the sound dataset (AudioSet), False for language.
    """
    scaled = min_max_scale_heads(head_scores)
    _check_two_heads(scaled)
    labels = _dataset_indicators(is_sound)
    delta = np.array(
        [[binary_average_precision(scaled[:, k], labels[d]) for d in range(2)] for k in range(2)]
    )
    return _best_assignment(delta)


def act_dis(head_scores: np.ndarray, is_sound: np.ndarray) -> float:
    """ActDis (paper eq. 8 in eq. 7): how silent each head is on the other head's dataset.

    ``delta_act(k, k') = 1 - mean_{b in dataset k'} S_hat(a_b, v_b)_k`` (the inactivity of head
    k on dataset k'); the best of the two assignments, halved. 100% when the sound head is
    silent on every language clip and vice versa.

    Args: as :func:`pred_dis`.
    """
    scaled = min_max_scale_heads(head_scores)
    _check_two_heads(scaled)
    labels = _dataset_indicators(is_sound)
    delta = np.array([[1.0 - scaled[labels[d], k].mean() for d in range(2)] for k in range(2)])
    return _best_assignment(delta)


def _check_two_heads(scaled: np.ndarray) -> None:
    if scaled.shape[1] != 2:
        raise ValueError(f"PredDis/ActDis are defined for two heads, got {scaled.shape[1]}")
