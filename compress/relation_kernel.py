"""The relation KL fused into one Triton kernel per direction, so no ``[B·R, T, T]`` tensor reaches GPU memory.

What it computes is ``compress.relation_loss.relation_kl`` (the reference and the CPU path): per sequence b and
relation head r, the scores ``S = X Xᵀ/√d`` of the student's and the teacher's head, both row log-softmaxes over
real keys, and ``Σ_rows KL(softmax(S_t) ‖ softmax(S_s))`` over real query rows. As FlashAttention does for
attention, each program keeps a block of query rows and walks the key axis in blocks with an online
log-sum-exp, so only Q/K/V tiles are read and only per-row figures are written:

- forward: ``lse_s``, ``lse_t`` and the row KL ``[B·R, T]`` (fp32). With ``m`` the running max, ``l`` the running
  sum of ``exp(S − m)`` and ``a = Σ exp(S_t − m_t)·(S_t − S_s)``, a row's
  ``KL = a/l_t − lse_t + lse_s`` (since Σ p_t = 1).
- backward: ``dS_s[i, j] = w·(P_s[i, j] − P_t[i, j])`` is rebuilt from the saved log-sum-exps, and because the
  relation is ``X Xᵀ`` (S symmetric), ``dX[p] = (1/√d)·Σ_q (G[p, q] + G[q, p]ᵀ) X[q]``: program p computes both
  terms from the same score block, so every row of ``dX`` is written by one program, without atomics
  (deterministic, like the reference).

Inputs are read in place from the ``[B, T, H]`` projections (head r is columns ``r·d … (r+1)·d``), in fp32 or
bf16; scores, softmaxes and sums accumulate in fp32. fp32 inputs multiply in IEEE fp32 (never TF32), bf16 ones on
bf16 tensor cores; the backward's ``G`` is rounded to bf16 for its matmul when the inputs are bf16, as
FlashAttention rounds P.

Rules of GPU Triton that its CPU interpreter (``TRITON_INTERPRET=1``, how the tests run this file) does not
enforce are kept by :func:`tile_plan`, which the tests check: every ``tl.dot`` operand is at least 16 on each
axis and a power of two (a relation-head size below 16, the 6×384 student's 8 with 48 relation heads, is padded
with zeros by masked loads, never copied), and the tiles a program holds fit the shared memory and registers of
the smallest GPU Triton targets here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# Scores of padded keys: exp() of it is 0 in fp32, as in compress.relation_loss (_MASKED), and never NaN.
MASKED = -1.0e9
# A program's fp32 score tiles (student and teacher, BLOCK_M × BLOCK_N each, and the ones built from them) live in
# registers: 64 × 64 with 4 warps is 32 values per thread and tile. The operand tiles (Q/K rows of both models)
# go through shared memory: at most 64 KiB, leaving room for two pipeline stages in any GPU's 100+ KiB.
MAX_BLOCK = 64
MAX_HEAD_SIZE = 128
SHARED_BYTES_LIMIT = 64 * 1024


@dataclass(frozen=True)
class TilePlan:
    """Block sizes of one launch: query rows and keys per block, and head sizes padded to a power of two ≥ 16."""

    block_m: int
    block_n: int
    block_ds: int
    block_dt: int
    num_warps: int = 4

    def shared_bytes(self, element_bytes: int) -> int:
        """Bytes of the operand tiles a program holds: Q rows and K rows of both models."""
        return element_bytes * (self.block_m + self.block_n) * (self.block_ds + self.block_dt)


def _pow2_at_least_16(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def tile_plan(length: int, student_head: int, teacher_head: int, element_bytes: int = 4,
              block: int | None = None) -> TilePlan:
    """Tiles for sequences of ``length`` and relation heads of the given sizes; ``block`` forces the row and key
    block (tests use a small one to exercise the key loop). Raises ValueError where the kernel cannot run."""
    if max(student_head, teacher_head) > MAX_HEAD_SIZE:
        raise ValueError(f"relation heads of {max(student_head, teacher_head)} dimensions are larger than the triton "
                         f"kernel's {MAX_HEAD_SIZE}: use more relation heads or train.relation_kernel=torch")
    size = block or min(MAX_BLOCK, _pow2_at_least_16(length))
    if size < 16 or size & (size - 1):
        raise ValueError(f"block {size}: tl.dot needs a power of two of at least 16")
    plan = TilePlan(size, size, _pow2_at_least_16(student_head), _pow2_at_least_16(teacher_head))
    while plan.shared_bytes(element_bytes) > SHARED_BYTES_LIMIT:  # wide heads: fewer keys, then fewer rows
        if plan.block_n > 16:
            plan = TilePlan(plan.block_m, plan.block_n // 2, plan.block_ds, plan.block_dt)
        else:
            plan = TilePlan(plan.block_m // 2, plan.block_n, plan.block_ds, plan.block_dt)
    return plan


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, WIDEN: tl.constexpr):
    """``a @ b`` accumulated in fp32. WIDEN: bf16 operands widened to fp32 first (the same products: a bf16 product
    is exact in fp32), for Triton's interpreter, whose dot multiplies bf16 operands as raw 16-bit integers."""
    if WIDEN:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _program_rows(T, R, BLOCK_M: tl.constexpr):
    """This program's (sequence, relation head) and rows. One flat grid, row blocks of the same head side by side,
    so that they run together and share that head's key tiles in L2 (and no grid axis meets CUDA's 65,535 limit
    for B·R). Returns (b·R + r, b, r, rows [BLOCK_M])."""
    row_blocks = tl.cdiv(T, BLOCK_M)
    seq_head = tl.program_id(0) // row_blocks
    rows = (tl.program_id(0) % row_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    return seq_head, seq_head // R, seq_head % R, rows


@triton.jit
def _load_rows(x, idx, stride, T, D, BLOCK_D: tl.constexpr):
    """Rows ``idx`` of one relation head starting at ``x``: [len(idx), BLOCK_D], zero past T and past D."""
    d = tl.arange(0, BLOCK_D)
    return tl.load(x + idx[:, None] * stride + d[None, :], mask=(idx[:, None] < T) & (d[None, :] < D), other=0.0)


@triton.jit
def _relation_kl_forward(
    XS, XT, VALID, LSE_S, LSE_T, ROW_KL,
    stride_sb, stride_st, stride_tb, stride_tt, stride_vb,
    T, R, D_S, D_T, scale_s, scale_t,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DS: tl.constexpr, BLOCK_DT: tl.constexpr,
    PRECISION: tl.constexpr, WIDEN: tl.constexpr,
):
    seq_head, b, r, rows = _program_rows(T, R, BLOCK_M)
    xs = XS + b * stride_sb + r * D_S
    xt = XT + b * stride_tb + r * D_T
    in_rows = rows < T
    q_s = _load_rows(xs, rows, stride_st, T, D_S, BLOCK_DS)
    q_t = _load_rows(xt, rows, stride_tt, T, D_T, BLOCK_DT)

    m_s = tl.full([BLOCK_M], -1.0e30, tl.float32)
    m_t = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_s = tl.zeros([BLOCK_M], tl.float32)
    l_t = tl.zeros([BLOCK_M], tl.float32)
    a = tl.zeros([BLOCK_M], tl.float32)  # Σ exp(S_t − m_t)·(S_t − S_s)
    for start in range(0, T, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        in_cols = cols < T
        k_s = _load_rows(xs, cols, stride_st, T, D_S, BLOCK_DS)
        k_t = _load_rows(xt, cols, stride_tt, T, D_T, BLOCK_DT)
        key_ok = tl.load(VALID + b * stride_vb + cols, mask=in_cols, other=0) != 0
        s_s = tl.where(key_ok[None, :], _dot(q_s, tl.trans(k_s), PRECISION, WIDEN) * scale_s, -1.0e9)
        s_t = tl.where(key_ok[None, :], _dot(q_t, tl.trans(k_t), PRECISION, WIDEN) * scale_t, -1.0e9)

        m_s_new = tl.maximum(m_s, tl.max(s_s, 1))
        l_s = l_s * tl.exp(m_s - m_s_new) + tl.sum(tl.exp(s_s - m_s_new[:, None]), 1)
        m_s = m_s_new
        m_t_new = tl.maximum(m_t, tl.max(s_t, 1))
        alpha_t = tl.exp(m_t - m_t_new)
        p_t = tl.exp(s_t - m_t_new[:, None])
        l_t = l_t * alpha_t + tl.sum(p_t, 1)
        a = a * alpha_t + tl.sum(p_t * (s_t - s_s), 1)
        m_t = m_t_new

    lse_s = m_s + tl.log(l_s)
    lse_t = m_t + tl.log(l_t)
    row_ok = tl.load(VALID + b * stride_vb + rows, mask=in_rows, other=0) != 0
    tl.store(LSE_S + seq_head * T + rows, lse_s, mask=in_rows)
    tl.store(LSE_T + seq_head * T + rows, lse_t, mask=in_rows)
    tl.store(ROW_KL + seq_head * T + rows, tl.where(row_ok, a / l_t - lse_t + lse_s, 0.0), mask=in_rows)


@triton.jit
def _relation_kl_backward(
    XS, XT, VALID, LSE_S, LSE_T, GRAD_SCALE, DXS,
    stride_sb, stride_st, stride_tb, stride_tt, stride_vb, stride_db, stride_dt,
    T, R, D_S, D_T, scale_s, scale_t,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DS: tl.constexpr, BLOCK_DT: tl.constexpr,
    PRECISION: tl.constexpr, WIDEN: tl.constexpr,
):
    seq_head, b, r, rows = _program_rows(T, R, BLOCK_M)
    xs = XS + b * stride_sb + r * D_S
    xt = XT + b * stride_tb + r * D_T
    in_rows = rows < T
    q_s = _load_rows(xs, rows, stride_st, T, D_S, BLOCK_DS)
    q_t = _load_rows(xt, rows, stride_tt, T, D_T, BLOCK_DT)
    row_ok = tl.load(VALID + b * stride_vb + rows, mask=in_rows, other=0) != 0
    lse_s_rows = tl.load(LSE_S + seq_head * T + rows, mask=in_rows, other=0.0)
    lse_t_rows = tl.load(LSE_T + seq_head * T + rows, mask=in_rows, other=0.0)

    acc = tl.zeros([BLOCK_M, BLOCK_DS], tl.float32)
    for start in range(0, T, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        in_cols = cols < T
        k_s = _load_rows(xs, cols, stride_st, T, D_S, BLOCK_DS)
        k_t = _load_rows(xt, cols, stride_tt, T, D_T, BLOCK_DT)
        col_ok = tl.load(VALID + b * stride_vb + cols, mask=in_cols, other=0) != 0
        lse_s_cols = tl.load(LSE_S + seq_head * T + cols, mask=in_cols, other=0.0)
        lse_t_cols = tl.load(LSE_T + seq_head * T + cols, mask=in_cols, other=0.0)
        s_s = _dot(q_s, tl.trans(k_s), PRECISION, WIDEN) * scale_s  # S[rows, cols] = S[cols, rows]ᵀ
        s_t = _dot(q_t, tl.trans(k_t), PRECISION, WIDEN) * scale_t
        real = row_ok[:, None] & col_ok[None, :]
        # G[p, q]: rows as queries, cols as keys; G[q, p]ᵀ: cols as queries, rows as keys.
        # A probability is at most 1: clamping the exponent changes no real entry and keeps the discarded
        # ones (padded rows and keys) from overflowing.
        g = tl.exp(tl.minimum(s_s - lse_s_rows[:, None], 0.0)) - tl.exp(tl.minimum(s_t - lse_t_rows[:, None], 0.0))
        g += tl.exp(tl.minimum(s_s - lse_s_cols[None, :], 0.0)) - tl.exp(tl.minimum(s_t - lse_t_cols[None, :], 0.0))
        g = tl.where(real, g, 0.0)
        acc += _dot(g.to(k_s.dtype), k_s, PRECISION, WIDEN)

    grad_scale = tl.load(GRAD_SCALE)
    ds = tl.arange(0, BLOCK_DS)
    out = DXS + b * stride_db + r * D_S + rows[:, None] * stride_dt + ds[None, :]
    tl.store(out, acc * (scale_s * grad_scale), mask=in_rows[:, None] & (ds[None, :] < D_S))


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") in ("1", "true", "True")


def _precision(x: torch.Tensor) -> str:
    return "ieee" if x.dtype == torch.float32 else "tf32"  # tf32 is unused for bf16 operands (bf16 tensor cores)


def _check(x: torch.Tensor, name: str, valid: torch.Tensor, heads: int) -> torch.Tensor:
    if x.dim() != 3 or x.shape[:2] != valid.shape:
        raise ValueError(f"{name} must be [B, T, H] matching attention_mask {tuple(valid.shape)}, got {tuple(x.shape)}")
    if x.shape[-1] % heads:
        raise ValueError(f"{heads} relation heads do not divide hidden size {x.shape[-1]}")
    if x.dtype not in (torch.float32, torch.bfloat16):
        x = x.float()
    return x if x.stride(-1) == 1 else x.contiguous()


class FusedRelationKL(torch.autograd.Function):
    """Σ over real query rows of KL(teacher ‖ student) for one relation, divided by ``num_rows`` (a device
    tensor). student ``[B, T, H_s]``, teacher ``[B, T, H_t]`` (fp32 or bf16), valid ``[B, T]`` int8 (1 = real
    token). Returns a float32 scalar; the gradient flows to the student only."""

    @staticmethod
    def forward(ctx, xs, xt, valid, num_rows, heads: int, block: int | None):
        batch, length, hidden_s = xs.shape
        d_s, d_t = hidden_s // heads, xt.shape[-1] // heads
        plan = tile_plan(length, d_s, d_t, xs.element_size(), block)
        lse_s = torch.empty(batch * heads, length, device=xs.device, dtype=torch.float32)
        lse_t, row_kl = torch.empty_like(lse_s), torch.empty_like(lse_s)
        grid = (batch * heads * triton.cdiv(length, plan.block_m),)
        _relation_kl_forward[grid](
            xs, xt, valid, lse_s, lse_t, row_kl,
            xs.stride(0), xs.stride(1), xt.stride(0), xt.stride(1), valid.stride(0),
            length, heads, d_s, d_t, 1.0 / math.sqrt(d_s), 1.0 / math.sqrt(d_t),
            BLOCK_M=plan.block_m, BLOCK_N=plan.block_n, BLOCK_DS=plan.block_ds, BLOCK_DT=plan.block_dt,
            PRECISION=_precision(xs), WIDEN=_interpreted(), num_warps=plan.num_warps,
        )
        ctx.save_for_backward(xs, xt, valid, lse_s, lse_t, num_rows)
        ctx.heads, ctx.plan = heads, plan
        return row_kl.sum() / num_rows

    @staticmethod
    def backward(ctx, grad_total):
        xs, xt, valid, lse_s, lse_t, num_rows = ctx.saved_tensors
        batch, length, hidden_s = xs.shape
        heads, plan = ctx.heads, ctx.plan
        d_s, d_t = hidden_s // heads, xt.shape[-1] // heads
        grad_scale = (grad_total.float() / num_rows).reshape(1)  # stays on the device: no host sync
        grad_xs = torch.empty_like(xs)
        grid = (batch * heads * triton.cdiv(length, plan.block_m),)
        _relation_kl_backward[grid](
            xs, xt, valid, lse_s, lse_t, grad_scale, grad_xs,
            xs.stride(0), xs.stride(1), xt.stride(0), xt.stride(1), valid.stride(0), grad_xs.stride(0), grad_xs.stride(1),
            length, heads, d_s, d_t, 1.0 / math.sqrt(d_s), 1.0 / math.sqrt(d_t),
            BLOCK_M=plan.block_m, BLOCK_N=plan.block_n, BLOCK_DS=plan.block_ds, BLOCK_DT=plan.block_dt,
            PRECISION=_precision(xs), WIDEN=_interpreted(), num_warps=plan.num_warps,
        )
        return grad_xs, None, None, None, None, None


def fused_relation_kl(student_x: torch.Tensor, teacher_x: torch.Tensor, attention_mask: torch.Tensor,
                      num_relation_heads: int, *, block: int | None = None) -> torch.Tensor:
    """Mean KL(teacher ‖ student) of one self-relation over relation heads and real query rows, as
    ``compress.relation_loss.relation_kl``. student_x ``[B, T, H_s]``, teacher_x ``[B, T, H_t]``,
    attention_mask ``[B, T]``; returns a float32 scalar."""
    valid = attention_mask.to(torch.int8)
    valid = valid if valid.stride(-1) == 1 else valid.contiguous()
    xs = _check(student_x, "student_x", attention_mask, num_relation_heads)
    xt = _check(teacher_x.detach(), "teacher_x", attention_mask, num_relation_heads)
    if xt.dtype != xs.dtype:
        xt = xt.to(xs.dtype)
    num_rows = (valid.sum() * num_relation_heads).float().clamp(min=1.0)
    return FusedRelationKL.apply(xs, xt, valid, num_rows, num_relation_heads, block)
