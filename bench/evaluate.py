"""Score an encoder (PyTorch or ONNX Runtime, see ``bench.encoders``) on a task (see ``bench.tasks``).

Each score is a flat record ``{"task", "metric", "language", "value"}``; ``language`` is None for the
overall figure. The headline metric of each kind is ``bench.tasks.HEADLINE``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from bench.encoders import Encoder
from bench.metrics import accuracy, bitext_accuracy, by_group, macro_f1, row_cosines, similarity_correlation
from bench.probe import fit_probe
from bench.tasks import TaskSpec
from compress.errors import UserError

log = logging.getLogger(__name__)


def score(task: str, metric: str, value: float, language: str | None = None) -> dict[str, Any]:
    return {"task": task, "metric": metric, "language": language, "value": float(value)}


def evaluate(task: TaskSpec, encoder: Encoder, *, reference: Encoder | None = None, same_space: bool = False,
             seed: int = 0) -> list[dict[str, Any]]:
    """All scores of ``encoder`` on ``task``. Fidelity needs a ``reference`` (the teacher, or the FP32
    model an INT8 variant came from: then ``same_space`` adds direct embedding cosines)."""
    log.info("scoring %s on %s (%s)", getattr(encoder, "name", "model"), task.name, task.kind)
    if task.kind == "classification":
        return classification_scores(task, encoder, seed=seed)
    if task.kind == "bitext":
        return bitext_scores(task, encoder)
    if reference is None:
        raise UserError(f"task '{task.name}' measures fidelity to a reference model: give one (the teacher)")
    return fidelity_scores(task, encoder, reference, same_space=same_space)


def predict(task: TaskSpec, encoder: Encoder, rows: list[dict], *, seed: int = 0) -> tuple[list[str], str]:
    """Predicted labels for ``rows`` and how: ``head`` (the model's classifier) or ``probe`` (a linear
    probe on frozen embeddings, fitted on up to ``probe_train_examples`` rows of the train split)."""
    pairs = task.texts(rows, task.text_pair_field) if task.text_pair_field else None
    if encoder.labels:
        logits = encoder.logits(task.texts(rows), pairs)
        return [encoder.labels[i] for i in np.argmax(logits, axis=1)], "head"
    train = task.rows("train")
    if len(train) > task.probe_train_examples:
        keep = np.sort(np.random.default_rng(seed).choice(len(train), task.probe_train_examples, replace=False))
        train = [train[i] for i in keep]
    probe = fit_probe(_pair_embeddings(task, encoder, train), [str(r[task.label_field]) for r in train])
    return probe.predict(_pair_embeddings(task, encoder, rows)), "probe"


def _pair_embeddings(task: TaskSpec, encoder: Encoder, rows: list[dict]) -> np.ndarray:
    """[N, H] for single texts; [N, 4H] (u, v, |u−v|, u·v) for text pairs, as in InferSent/SBERT."""
    u = encoder.embed(task.texts(rows))
    if not task.text_pair_field:
        return u
    v = encoder.embed(task.texts(rows, task.text_pair_field))
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def classification_scores(task: TaskSpec, encoder: Encoder, *, split: str = "test", seed: int = 0) -> list[dict]:
    rows = task.rows(split)
    predicted, method = predict(task, encoder, rows, seed=seed)
    gold = [str(r[task.label_field]) for r in rows]
    labels = sorted(set(gold))
    scores = [score(task.name, "accuracy", accuracy(predicted, gold)),
              score(task.name, "macro_f1", macro_f1(predicted, gold, labels))]
    languages = task.languages(rows)
    if languages and len(set(languages)) > 1:
        for language, value in by_group(accuracy, predicted, gold, languages).items():
            scores.append(score(task.name, "accuracy", value, language))
    for s in scores:
        s["method"] = method
    return scores


def bitext_scores(task: TaskSpec, encoder: Encoder) -> list[dict]:
    """Per language: top-1 retrieval English→translation, back, and their mean (``accuracy``);
    overall: the mean over languages (each language counts once)."""
    rows = task.rows("test")
    languages = task.languages(rows) or ["all"] * len(rows)
    source = encoder.embed(task.texts(rows, task.source_field))
    target = encoder.embed(task.texts(rows, task.target_field))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, language in enumerate(languages):
        groups[language].append(i)
    scores, means = [], []
    for language in sorted(groups):
        index = groups[language]
        result = bitext_accuracy(source[index], target[index])
        means.append(result["mean"])
        scores += [score(task.name, "accuracy", result["mean"], language),
                   score(task.name, "accuracy_src2tgt", result["src2tgt"], language),
                   score(task.name, "accuracy_tgt2src", result["tgt2src"], language)]
    return [score(task.name, "accuracy", float(np.mean(means)))] + scores


def fidelity_scores(task: TaskSpec, encoder: Encoder, reference: Encoder, *, same_space: bool = False) -> list[dict]:
    """``similarity_correlation`` always; ``cosine_mean``/``cosine_min`` of the embeddings when both
    models share one embedding space (a quantized variant against its FP32 model)."""
    texts = task.texts(task.rows("test"))
    candidate, ref = encoder.embed(texts), reference.embed(texts)
    scores = [score(task.name, "similarity_correlation", similarity_correlation(candidate, ref))]
    if same_space:
        cosines = row_cosines(candidate, ref)
        scores += [score(task.name, "cosine_mean", cosines.mean()), score(task.name, "cosine_min", cosines.min())]
    return scores


def headline(scores: list[dict], task: TaskSpec) -> float | None:
    """The overall headline value of ``task`` in ``scores``."""
    for s in scores:
        if s["task"] == task.name and s["metric"] == task.headline and s["language"] is None:
            return s["value"]
    return None
