"""The relation loss as a pure function: a hand-computed case and its defining properties."""

import math

import pytest
import torch

from compress.relation_loss import KERNELS, relation_kd_loss
from reference.textbook_loss import naive_relation_loss


@pytest.fixture(params=KERNELS)
def kernel(request) -> str:
    """Each implementation in turn: every property below holds for both (the triton one under the interpreter)."""
    if request.param == "triton":
        pytest.importorskip("triton")
    return request.param


def _kl_two_point(a: float) -> float:
    """KL(softmax([a, 0]) ‖ [1/2, 1/2]) in closed form."""
    p = 1 / (1 + math.exp(-a))
    return p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))


def test_hand_computed_case(kernel):
    # Teacher Q = I (2 tokens, hidden 2, 1 relation head): scores = I / sqrt(2); student Q = 0: uniform rows.
    t = torch.eye(2)[None]  # [1, 2, 2]
    s = torch.zeros(1, 2, 2)
    mask = torch.ones(1, 2)
    total, parts = relation_kd_loss((s, s, s), (t, t, t), mask, num_relation_heads=1, kernel=kernel)
    expected = _kl_two_point(1 / math.sqrt(2))
    assert expected == pytest.approx(0.05880, abs=1e-5)  # the number worked out by hand
    for name in ("qq", "kk", "vv"):
        assert parts[name].item() == pytest.approx(expected, rel=1e-5)
    assert total.item() == pytest.approx(3 * expected, rel=1e-5)


def test_weights_scale_parts(kernel):
    t, s, mask = torch.eye(2)[None], torch.zeros(1, 2, 2), torch.ones(1, 2)
    total, parts = relation_kd_loss((s, s, s), (t, t, t), mask, 1, weights=(2.0, 0.0, 0.5), kernel=kernel)
    assert total.item() == pytest.approx(2.5 * parts["qq"].item(), rel=1e-6)


def test_zero_exactly_when_relations_match(kernel):
    torch.manual_seed(0)
    qkv = tuple(torch.randn(2, 5, 16) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    total, parts = relation_kd_loss(qkv, qkv, mask, num_relation_heads=4, kernel=kernel)
    assert total.item() == 0.0
    # A different student gives a strictly positive loss.
    other = tuple(x + 0.5 * torch.randn_like(x) for x in qkv)
    assert relation_kd_loss(other, qkv, mask, 4, kernel=kernel)[0].item() > 1e-4


def test_padding_is_invisible(kernel):
    """Values at padded positions change neither the loss nor the gradient at real positions."""
    torch.manual_seed(1)
    t = tuple(torch.randn(1, 6, 12) for _ in range(3))
    s = tuple(torch.randn(1, 6, 8, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    loss_a, _ = relation_kd_loss(s, t, mask, num_relation_heads=4, kernel=kernel)
    grads_a = torch.autograd.grad(loss_a, s)

    t2 = tuple(x.clone() for x in t)
    s2 = tuple(x.detach().clone() for x in s)
    for x in t2 + s2:
        x[:, 4:] = 1000 * torch.randn_like(x[:, 4:])
    s2 = tuple(x.requires_grad_() for x in s2)
    loss_b, _ = relation_kd_loss(s2, t2, mask, num_relation_heads=4, kernel=kernel)
    grads_b = torch.autograd.grad(loss_b, s2)

    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga[:, :4], gb[:, :4])
        assert torch.all(gb[:, 4:] == 0)
    # And equal to the same sequence without padding at all.
    loss_c, _ = relation_kd_loss(tuple(x[:, :4] for x in s), tuple(x[:, :4] for x in t), mask[:, :4], 4, kernel=kernel)
    assert loss_a.item() == pytest.approx(loss_c.item(), rel=1e-6)


def test_different_sizes_and_relation_heads_equal_to_neither_model(kernel):
    """Teacher hidden 48 (e.g. 12 heads), student hidden 32 (e.g. 2 heads), 8 relation heads."""
    torch.manual_seed(2)
    t = tuple(torch.randn(3, 7, 48) for _ in range(3))
    s = tuple(torch.randn(3, 7, 32, requires_grad=True) for _ in range(3))
    mask = torch.ones(3, 7)
    loss, parts = relation_kd_loss(s, t, mask, num_relation_heads=8, kernel=kernel)
    assert loss.item() > 0 and set(parts) == {"qq", "kk", "vv"}
    loss.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)


def test_gradients_reach_the_student_only(kernel):
    t = tuple(torch.randn(2, 4, 16, requires_grad=True) for _ in range(3))
    s = tuple(torch.randn(2, 4, 16, requires_grad=True) for _ in range(3))
    loss, _ = relation_kd_loss(s, t, torch.ones(2, 4), 4, kernel=kernel)
    loss.backward()
    assert all(x.grad is None for x in t)
    assert all(x.grad is not None for x in s)


def test_float32_under_bf16_inputs(kernel):
    torch.manual_seed(3)
    t = tuple(torch.randn(2, 5, 16) for _ in range(3))
    s = tuple(torch.randn(2, 5, 16) for _ in range(3))
    mask = torch.ones(2, 5)
    loss32, _ = relation_kd_loss(s, t, mask, 4, kernel=kernel)
    loss16, _ = relation_kd_loss(tuple(x.bfloat16() for x in s), tuple(x.bfloat16() for x in t), mask, 4, kernel=kernel)
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.05)


def test_relation_heads_must_divide_hidden(kernel):
    x = torch.randn(1, 3, 12)
    with pytest.raises(ValueError, match="do not divide"):
        relation_kd_loss((x, x, x), (x, x, x), torch.ones(1, 3), num_relation_heads=5, kernel=kernel)


def test_matches_the_definition_in_value_and_gradient(kernel):
    torch.manual_seed(4)
    t = tuple(2 * torch.randn(3, 9, 24) for _ in range(3))
    s = tuple(torch.randn(3, 9, 16, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    loss, _ = relation_kd_loss(s, t, mask, num_relation_heads=4, kernel=kernel)
    grads = torch.autograd.grad(loss, s)
    # The textbook implementation (softmax, masked_fill, F.kl_div, autograd), also the benchmark's baseline.
    s_ref = tuple(x.detach().clone().requires_grad_() for x in s)
    ref = naive_relation_loss(s_ref, t, mask, 4)
    ref_grads = torch.autograd.grad(ref, s_ref)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-7)
