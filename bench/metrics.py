"""Scores on NumPy arrays: classification, bitext retrieval, fidelity. Pure functions, no model.

Every function takes plain arrays so that a PyTorch model and an ONNX Runtime session are scored by
the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(predicted: Sequence, gold: Sequence) -> float:
    """Share of positions where ``predicted`` equals ``gold``."""
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    if len(gold) == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(predicted == gold))


def macro_f1(predicted: Sequence, gold: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean over ``labels`` (default: every label in gold or predicted) of per-label F1.

    A label never predicted and never gold does not occur; one with no true positive scores 0.
    """
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    labels = sorted(set(gold.tolist()) | set(predicted.tolist())) if labels is None else list(labels)
    scores = []
    for label in labels:
        tp = np.sum((predicted == label) & (gold == label))
        fp = np.sum((predicted == label) & (gold != label))
        fn = np.sum((predicted != label) & (gold == label))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def by_group(metric, predicted: Sequence, gold: Sequence, groups: Sequence) -> dict[str, float]:
    """``metric(predicted, gold)`` computed separately for each value in ``groups`` (e.g. a language)."""
    predicted, gold, groups = np.asarray(predicted), np.asarray(gold), np.asarray(groups)
    return {str(g): metric(predicted[groups == g], gold[groups == g]) for g in sorted(set(groups.tolist()))}


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). [N, H] → [N, H], float64."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def retrieval_top1(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Share of queries whose most cosine-similar candidate is the one at the same row.

    queries [N, H], candidates [N, H]: row i of each is a translation pair. Ties go to the lowest index.
    """
    if len(queries) != len(candidates) or len(queries) == 0:
        raise ValueError("retrieval needs the same, non-zero number of queries and candidates")
    similarity = unit_rows(queries) @ unit_rows(candidates).T
    return float(np.mean(np.argmax(similarity, axis=1) == np.arange(len(queries))))


def bitext_accuracy(source: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Top-1 retrieval both ways for aligned pairs: {"src2tgt", "tgt2src", "mean"}. [N, H] each."""
    forward, backward = retrieval_top1(source, target), retrieval_top1(target, source)
    return {"src2tgt": forward, "tgt2src": backward, "mean": (forward + backward) / 2}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of ``a`` with row i of ``b``. [N, H] × [N, H] → [N] float64."""
    if a.shape != b.shape:
        raise ValueError(f"cannot compare embeddings of shapes {a.shape} and {b.shape}")
    return np.sum(unit_rows(a) * unit_rows(b), axis=1)


def similarity_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation between the pairwise cosine similarities of two embedding sets.

    a [N, Ha], b [N, Hb] embed the same N texts; the widths may differ. 1.0 means both models order
    every pair of texts alike, the dimension-free way to ask whether a student sees the teacher's
    sentence geometry (direct cosines only make sense between variants of one model).
    """
    if len(a) != len(b) or len(a) < 3:
        raise ValueError("similarity correlation needs the same texts, at least 3, embedded by both models")
    upper = np.triu_indices(len(a), k=1)
    sa, sb = (unit_rows(a) @ unit_rows(a).T)[upper], (unit_rows(b) @ unit_rows(b).T)[upper]
    if np.std(sa) == 0 or np.std(sb) == 0:
        return 0.0
    return float(np.corrcoef(sa, sb)[0, 1])
