"""MiniLMv2 self-attention relation loss (Wang et al., 2021), as one pure tensor function.

For X in {Q, K, V} of one teacher layer and one student layer (heads concatenated, ``[B, T, H]``):
split the hidden axis into ``R`` relation heads of size ``d = H / R`` (teacher and student each with
their own ``d``), form the relation ``softmax(X_r X_rᵀ / sqrt(d))`` over key positions, and take
``KL(teacher ‖ student)`` per query row. Rows are averaged over relation heads and *valid* query
positions; padded keys get zero probability; padded query rows are excluded. No temperature.
Softmax and KL run in float32 whatever the input dtype (bf16 autocast included).

Two kernels compute it: ``torch`` (this file: blocked ``baddbmm`` and softmaxes, the reference and the CPU path)
and ``triton`` (``compress.relation_kernel``: one fused kernel per direction that never writes the ``[B·R, T, T]``
relations to memory; on CUDA, or on CPU under Triton's interpreter for tests). :func:`resolve_relation_kernel`
chooses between them for ``train.relation_kernel``.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Literal, Sequence

import torch

from compress.errors import UserError

RELATIONS = ("qq", "kk", "vv")
KERNELS = ("torch", "triton")
Kernel = Literal["torch", "triton"]


# Added to the scores of padded keys: exp() of it is exactly 0 in float32, and unlike -inf it never
# produces NaN (0 · -inf) in the KL or its gradient.
_MASKED = -1e9


def _relation_heads(x: torch.Tensor, num_relation_heads: int) -> torch.Tensor:
    """``[B, T, H]`` → ``[B·R, T, H/R]`` float32 (the hidden axis re-split into relation heads)."""
    batch, length, hidden = x.shape
    if hidden % num_relation_heads:
        raise ValueError(f"{num_relation_heads} relation heads do not divide hidden size {hidden}")
    x = x.float().view(batch, length, num_relation_heads, hidden // num_relation_heads).transpose(1, 2)
    return x.reshape(batch * num_relation_heads, length, hidden // num_relation_heads)


def _key_bias(key_mask: torch.Tensor, num_relation_heads: int) -> torch.Tensor:
    """``[B, T]`` bool → ``[B·R, 1, T]`` float32: 0 for real keys, -1e9 for padded ones."""
    bias = torch.zeros(key_mask.shape, dtype=torch.float32, device=key_mask.device).masked_fill(~key_mask, _MASKED)
    return bias[:, None, :].repeat_interleave(num_relation_heads, dim=0)


def _scores(heads: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    """``key_bias + X Xᵀ / sqrt(d)`` in one fused pass: ``[B·R, T, T]``."""
    return torch.baddbmm(key_bias, heads, heads.transpose(1, 2), alpha=1.0 / math.sqrt(heads.shape[-1]))


def _chunks(n: int, length: int, device: torch.device):
    """Slices over the B·R axis whose ``[n, T, T]`` score blocks stay cache-sized on CPU (≈4 MB) and
    bounded on GPU (≈256 MB), so the elementwise passes run out of cache and memory stays flat."""
    budget = (1 << 26) if device.type == "cuda" else (1 << 20)
    step = max(1, budget // (length * length))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


class _RelationKL(torch.autograd.Function):
    """Σ_rows w_row · KL(softmax(S_t)_row ‖ softmax(S_s)_row), S = X Xᵀ/√d + key_bias, per relation head.

    Inputs: student heads ``[N, T, d_s]`` (N = B·R), teacher heads ``[N, T, d_t]``, key_bias
    ``[N, 1, T]``, row_weight ``[N, T]``, all float32. Nothing of size ``[N, T, T]`` is kept for the
    backward pass: it is recomputed block by block, and the gradient is written out directly:
    dL/dS_s = w · (softmax(S_s) − softmax(S_t)), dL/dX_s = (G + Gᵀ) X_s / √d_s.
    """

    @staticmethod
    def forward(ctx, xs, xt, key_bias, row_weight):
        total = xs.new_zeros(())
        with torch.autocast(device_type=xs.device.type, enabled=False):
            for sl in _chunks(xs.shape[0], xs.shape[1], xs.device):
                log_p_t = torch.log_softmax(_scores(xt[sl], key_bias[sl]), dim=-1)
                log_p_s = torch.log_softmax(_scores(xs[sl], key_bias[sl]), dim=-1)
                row_kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # [n, T]; padded keys: p_t = 0
                total += (row_kl * row_weight[sl]).sum()
        ctx.save_for_backward(xs, xt, key_bias, row_weight)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        xs, xt, key_bias, row_weight = ctx.saved_tensors
        grad_xs = torch.empty_like(xs)
        scale = 1.0 / math.sqrt(xs.shape[-1])
        with torch.autocast(device_type=xs.device.type, enabled=False):
            for sl in _chunks(xs.shape[0], xs.shape[1], xs.device):
                g = torch.softmax(_scores(xs[sl], key_bias[sl]), dim=-1)
                g -= torch.softmax(_scores(xt[sl], key_bias[sl]), dim=-1)
                g *= row_weight[sl][..., None] * (grad_total * scale)  # [n, T, T]
                x = xs[sl]
                grad_xs[sl] = torch.baddbmm(torch.bmm(g, x), g.transpose(1, 2), x)
        return grad_xs, None, None, None


def relation_kl(
    student_x: torch.Tensor, teacher_x: torch.Tensor, attention_mask: torch.Tensor, num_relation_heads: int,
    kernel: Kernel = "torch",
) -> torch.Tensor:
    """Mean KL(teacher ‖ student) of one self-relation (e.g. Q-Q) over relation heads and valid query rows.

    student_x ``[B, T, H_s]``, teacher_x ``[B, T, H_t]``, attention_mask ``[B, T]``; returns a float32 scalar.
    A mask without any real token is refused on CPU; on CUDA it gives 0 (checking would wait for the device).
    """
    valid = attention_mask.bool()
    if valid.device.type == "cpu" and not valid.any():
        raise ValueError("attention_mask has no valid token")
    if kernel == "triton":
        from compress.relation_kernel import fused_relation_kl

        return fused_relation_kl(student_x, teacher_x, attention_mask, num_relation_heads)
    num_rows = (valid.sum() * num_relation_heads).clamp(min=1)
    key_bias = _key_bias(valid, num_relation_heads)  # [B·R, 1, T]
    # Each valid query row weighs 1 / (R · valid tokens); padded query rows weigh 0.
    row_weight = (valid.float() / num_rows).repeat_interleave(num_relation_heads, dim=0)  # [B·R, T]
    return _RelationKL.apply(_relation_heads(student_x, num_relation_heads),
                             _relation_heads(teacher_x.detach(), num_relation_heads), key_bias, row_weight)


def resolve_relation_kernel(requested: str, device: torch.device) -> Kernel:
    """``train.relation_kernel``: ``auto`` is triton on CUDA where triton imports, torch elsewhere. ``triton`` on a
    CPU needs Triton's interpreter (``TRITON_INTERPRET=1``, slow: for tests); anything it cannot run is a UserError."""
    has_triton = importlib.util.find_spec("triton") is not None
    if requested == "auto":
        return "triton" if device.type == "cuda" and has_triton else "torch"
    if requested == "triton":
        if not has_triton:
            raise UserError("train.relation_kernel=triton needs triton: pip install triton (CUDA builds of torch "
                            "bring it), or use train.relation_kernel=torch")
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") not in ("1", "true", "True"):
            raise UserError(f"train.relation_kernel=triton runs on CUDA; on {device.type} only under Triton's "
                            "interpreter (set TRITON_INTERPRET=1, slow, for tests): use train.relation_kernel=torch")
    elif requested not in KERNELS:
        raise UserError(f"unknown relation kernel {requested!r}: choose auto, torch or triton")
    return requested  # type: ignore[return-value]


def relation_kd_loss(
    student_qkv: Sequence[torch.Tensor],
    teacher_qkv: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    num_relation_heads: int,
    weights: Sequence[float] = (1.0, 1.0, 1.0),
    kernel: Kernel = "torch",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum over Q-Q, K-K, V-V of the mean KL(teacher ‖ student) relation divergence.

    student_qkv: (Q, K, V), each ``[B, T, H_s]``; teacher_qkv: (Q, K, V), each ``[B, T, H_t]``;
    attention_mask: ``[B, T]`` (1 or True for real tokens). ``num_relation_heads`` must divide both
    ``H_s`` and ``H_t``. Returns (scalar float32 loss, {"qq": ..., "kk": ..., "vv": ...} unweighted,
    each a scalar). Gradients flow to the student tensors only; the teacher's are detached. ``kernel`` chooses
    the implementation (see the module's docstring); both compute the same values and gradients.
    """
    if len(student_qkv) != 3 or len(teacher_qkv) != 3 or len(weights) != 3:
        raise ValueError("expected (Q, K, V) for student and teacher and three relation weights")
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), dtype=torch.float32, device=attention_mask.device)
    for name, s, t, w in zip(RELATIONS, student_qkv, teacher_qkv, weights):
        parts[name] = relation_kl(s, t, attention_mask, num_relation_heads, kernel)
        total = total + w * parts[name]
    return total, parts
