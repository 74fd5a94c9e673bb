"""The fused Triton relation KL against the torch reference, in value and gradient (on CPU under Triton's
interpreter, on CUDA natively), and the tile rules that the interpreter does not enforce."""

import json
import os

import pytest
import torch

pytest.importorskip("triton")

from compress.errors import UserError  # noqa: E402
from compress.relation_kernel import MAX_HEAD_SIZE, SHARED_BYTES_LIMIT, fused_relation_kl, tile_plan  # noqa: E402
from compress.relation_loss import relation_kd_loss, relation_kl, resolve_relation_kernel  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pair(batch, length, h_s, h_t, heads, lengths, seed=0, dtype=torch.float32):
    """Student and teacher projections ``[B, T, H]`` (the student's a leaf with a gradient) and a padding mask."""
    g = torch.Generator().manual_seed(seed)
    xs = (torch.randn(batch, length, h_s, generator=g)).to(DEVICE, dtype).requires_grad_()
    xt = (1.5 * torch.randn(batch, length, h_t, generator=g)).to(DEVICE, dtype)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return xs, xt, mask.to(DEVICE)


def _both(xs, xt, mask, heads, block=None):
    ref = relation_kl(xs, xt, mask, heads, kernel="torch")
    (ref_grad,) = torch.autograd.grad(ref, xs)
    out = fused_relation_kl(xs, xt, mask, heads, block=block)
    (grad,) = torch.autograd.grad(out, xs)
    return ref, ref_grad, out, grad


CASES = {
    # name: (batch, T, H_s, H_t, relation heads, real lengths per row, forced block)
    "padding": (3, 12, 16, 24, 4, (12, 7, 1), None),
    "head-size-8": (2, 20, 32, 64, 4, (20, 13), None),  # student heads of 8, padded to 16 on chip
    "heads-divide-neither": (2, 9, 30, 45, 5, (9, 4), None),  # e.g. 3 and 9 attention heads; sizes 6 and 9
    "odd-length": (2, 37, 24, 48, 3, (37, 30), None),  # T not a power of two: one 64-wide block, masked
    "blocked": (2, 50, 16, 32, 2, (50, 21), 16),  # four key blocks with an online log-sum-exp, four row blocks
    "blocked-odd-padding": (3, 33, 8, 16, 1, (33, 17, 16), 16),  # a row block that is all padding
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_equals_the_torch_path_in_fp32(case):
    batch, length, h_s, h_t, heads, lengths, block = case
    xs, xt, mask = _pair(batch, length, h_s, h_t, heads, lengths)
    ref, ref_grad, out, grad = _both(xs, xt, mask, heads, block)
    assert out.dtype == torch.float32 and ref.item() > 1e-3
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5 * ref_grad.abs().max().item())
    padded = ~mask.bool()
    assert torch.all(grad[padded] == 0)  # padded positions get no gradient, as in the reference


def test_blocks_do_not_change_the_result():
    """The same inputs in one block and in 16-wide blocks (the online log-sum-exp path) agree."""
    xs, xt, mask = _pair(2, 64, 16, 32, 2, (64, 40), seed=3)
    whole = fused_relation_kl(xs, xt, mask, 2)
    (g_whole,) = torch.autograd.grad(whole, xs)
    blocked = fused_relation_kl(xs, xt, mask, 2, block=16)
    (g_blocked,) = torch.autograd.grad(blocked, xs)
    assert blocked.item() == pytest.approx(whole.item(), rel=1e-6)
    torch.testing.assert_close(g_blocked, g_whole, rtol=1e-5, atol=1e-8)


def test_bf16_inputs_accumulate_in_fp32():
    """bf16 projections (as under autocast): fp32 result, close to the torch path on the same bf16 values."""
    xs, xt, mask = _pair(2, 24, 32, 48, 4, (24, 15), seed=5, dtype=torch.bfloat16)
    ref, ref_grad, out, grad = _both(xs, xt, mask, 4)
    assert out.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert out.item() == pytest.approx(ref.item(), rel=1e-4)  # the scores of bf16 values are exact in fp32
    # dX is rounded to bf16 either way; the kernel also rounds G to bf16 for its matmul (as FlashAttention does).
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=2e-2, atol=2e-2 * ref_grad.abs().max().item())


def test_loss_weights_per_relation_and_teacher_untouched():
    """relation_kd_loss with the triton kernel: the weighted sum of the three relations, as the torch kernel."""
    qkv = [_pair(2, 10, 16, 24, 4, (10, 6), seed=s) for s in range(3)]
    student = tuple(x[0] for x in qkv)
    teacher = tuple(x[1].requires_grad_() for x in qkv)
    mask = qkv[0][2]
    weights = (1.0, 0.5, 2.0)
    total, parts = relation_kd_loss(student, teacher, mask, 4, weights, kernel="triton")
    ref_total, ref_parts = relation_kd_loss(student, teacher, mask, 4, weights, kernel="torch")
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)
    assert total.item() == pytest.approx(sum(w * parts[k].item() for w, k in zip(weights, ("qq", "kk", "vv"))), rel=1e-6)
    grads = torch.autograd.grad(total, student)
    ref_grads = torch.autograd.grad(ref_total, student)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5 * rg.abs().max().item())
    assert all(t.grad is None for t in teacher)


@pytest.mark.parametrize("length", [1, 5, 16, 37, 64, 100, 128, 200, 384, 512])
@pytest.mark.parametrize("heads", [(8, 16), (16, 16), (32, 64), (6, 9), (64, 128), (128, 128)])
def test_tiles_keep_the_gpu_rules(length, heads):
    """What the interpreter does not check: tl.dot operands at least 16 and powers of two on every axis, operand
    tiles within the shared-memory budget, and register tiles no larger than 64 × 64 per model."""
    for element_bytes in (2, 4):
        plan = tile_plan(length, *heads, element_bytes=element_bytes)
        for size in (plan.block_m, plan.block_n, plan.block_ds, plan.block_dt):
            assert size >= 16 and size & (size - 1) == 0
        assert plan.block_ds >= heads[0] and plan.block_dt >= heads[1]
        assert plan.shared_bytes(element_bytes) <= SHARED_BYTES_LIMIT
        assert plan.block_m * plan.block_n <= 64 * 64


def test_heads_too_wide_for_the_kernel_are_refused():
    with pytest.raises(ValueError, match="train.relation_kernel=torch"):
        tile_plan(128, MAX_HEAD_SIZE * 2, 16)


def test_resolve_relation_kernel(monkeypatch):
    assert resolve_relation_kernel("torch", torch.device("cpu")) == "torch"
    assert resolve_relation_kernel("auto", torch.device("cpu")) == "torch"
    assert resolve_relation_kernel("auto", torch.device("cuda")) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_relation_kernel("triton", torch.device("cpu")) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(UserError, match="TRITON_INTERPRET=1"):
        resolve_relation_kernel("triton", torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_base_shape_matches_the_torch_path():
    """The base shape's student and teacher head sizes (8 and 16 with 48 relation heads), T = 128 and 512."""
    for length in (128, 512):
        xs, xt, mask = _pair(4, length, 384, 768, 48, (length, length // 2, 7, 1), seed=7)
        ref, ref_grad, out, grad = _both(xs, xt, mask, 48)
        assert out.item() == pytest.approx(ref.item(), rel=1e-5)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5 * ref_grad.abs().max().item())
        xs16, xt16 = xs.detach().bfloat16().requires_grad_(), xt.bfloat16()
        ref16, _, out16, _ = _both(xs16, xt16, mask, 48)
        assert out16.item() == pytest.approx(ref16.item(), rel=1e-3)


# Compiles both kernels for a GPU architecture with Triton's own compiler and ptxas (both ship in the triton
# wheel; no GPU needed) and prints the shared memory each needs. Run without TRITON_INTERPRET, in a subprocess.
_COMPILE = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from compress import relation_kernel as rk

arch, dtype, length, d_s, d_t = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
plan = rk.tile_plan(length, d_s, d_t, element_bytes=2 if dtype == "bf16" else 4)
constants = {"BLOCK_M": plan.block_m, "BLOCK_N": plan.block_n, "BLOCK_DS": plan.block_ds, "BLOCK_DT": plan.block_dt,
             "PRECISION": "ieee" if dtype == "fp32" else "tf32", "WIDEN": False}
out = {"triton": triton.__version__}
for fn in (rk._relation_kl_forward, rk._relation_kl_backward):
    types = {}
    for name in fn.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name in ("XS", "XT", "DXS"):
            types[name] = "*" + dtype
        elif name == "VALID":
            types[name] = "*i8"
        elif name.isupper() and name not in ("T", "R", "D_S", "D_T"):
            types[name] = "*fp32"
        else:
            types[name] = "fp32" if name.startswith("scale") else "i32"
    kernel = triton.compile(ASTSource(fn=fn, signature=types, constexprs=constants),
                            target=GPUTarget("cuda", int(arch), 32), options={"num_warps": plan.num_warps})
    out[fn.__name__] = kernel.metadata.shared
print(json.dumps(out))
"""


@pytest.mark.parametrize("arch, dtype, shape", [
    ("90", "bf16", (128, 8, 16)),  # the base shape's student and teacher head sizes, as distilled (bf16)
    ("90", "fp32", (128, 8, 16)),
    ("80", "bf16", (512, 32, 64)),  # wider heads, the paper's length, on Ampere
    ("90", "fp32", (37, 128, 128)),  # the widest heads allowed, in fp32: the most shared memory
], ids=["hopper-bf16-base", "hopper-fp32-base", "ampere-bf16-wide", "hopper-fp32-widest"])
def test_kernels_compile_for_the_gpu(arch, dtype, shape):
    """The GPU rules the interpreter skips, enforced by the real compiler: both kernels build for Ampere and
    Hopper at the base shape's head sizes (8 and 16), wider heads and the widest allowed, within the shared memory
    of the smallest of those GPUs (99 KiB a block on sm_86)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE, arch, dtype, *map(str, shape)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shared = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("_relation_kl_forward", "_relation_kl_backward"):
        assert 0 < shared[name] <= 99 * 1024, shared
