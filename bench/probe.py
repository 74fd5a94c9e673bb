"""A linear probe: multinomial logistic regression on frozen sentence embeddings, in NumPy.

It lets every variant of a task-agnostic student (PyTorch, ONNX FP32, INT8) be scored on a labelled
task without fine-tuning it: the usual SentEval-style check of what the features carry. Fitting is
full-batch Nesterov gradient descent with the step set from the loss's smoothness bound, so it is
deterministic and needs no tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LinearProbe:
    """Standardisation plus softmax regression. ``mean``/``scale`` [H], ``weight`` [H, C], ``bias`` [C]."""

    labels: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        """[N, H] → [N, C]."""
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.labels[i] for i in np.argmax(self.logits(features), axis=1)]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _largest_eigenvalue(x: np.ndarray, iterations: int = 50) -> float:
    """Largest eigenvalue of xᵀx / n by power iteration (x [N, H])."""
    v = np.ones(x.shape[1]) / np.sqrt(x.shape[1])
    value = 0.0
    for _ in range(iterations):
        w = x.T @ (x @ v) / len(x)
        value = float(np.linalg.norm(w))
        if value == 0:
            return 0.0
        v = w / value
    return value


def fit_probe(features: np.ndarray, labels: list[str], *, l2: float = 1e-3, iterations: int = 300) -> LinearProbe:
    """Fit on [N, H] features and N string labels; L2 penalty ``l2`` on the weights."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("a probe needs at least two classes in the training split")
    x = np.asarray(features, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale < 1e-12, 1.0, scale)
    x = (x - mean) / scale
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(x), len(classes)))
    y[np.arange(len(x)), [index[label] for label in labels]] = 1.0

    # Softmax cross-entropy is (1/2)·λmax(xᵀx/n)-smooth in the weights (+1/2 for the bias column).
    step = 1.0 / (0.5 * (_largest_eigenvalue(x) + 1.0) + l2)
    w, b = np.zeros((x.shape[1], len(classes))), np.zeros(len(classes))
    w_prev, b_prev = w, b
    for t in range(1, iterations + 1):
        momentum = (t - 1) / (t + 2)
        w_look, b_look = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        residual = (_softmax(x @ w_look + b_look) - y) / len(x)
        w_prev, b_prev = w, b
        w = w_look - step * (x.T @ residual + l2 * w_look)
        b = b_look - step * residual.sum(axis=0)
    return LinearProbe(classes, mean, scale, w, b)
