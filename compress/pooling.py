"""Mean pooling, the sentence embedding of every encoder here (numpy arrays or torch tensors alike)."""

from __future__ import annotations

import numpy as np


def mean_pool(hidden, mask):
    """Mean of the token vectors the mask keeps: hidden ``[B, T, H]``, mask ``[B, T]`` → ``[B, H]``.

    Computed in ``hidden``'s precision, at least float32 (pass float64 arrays to resolve cosines near 1).
    Works on numpy arrays and on torch tensors (gradients flow); a row with no kept token gives zeros.
    """
    if isinstance(hidden, np.ndarray):
        hidden = hidden if hidden.dtype == np.float64 else hidden.astype(np.float32)
        keep = np.asarray(mask)[..., None].astype(hidden.dtype)
        return (hidden * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
    if hidden.element_size() < 4:  # bf16 / fp16 → float32
        hidden = hidden.float()
    keep = mask[..., None].to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1)
