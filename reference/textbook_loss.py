"""The MiniLMv2 relation loss written the textbook way: the reference ``compress.relation_loss`` is checked
against (tests/test_relation_loss.py) and timed against (benchmarks/distill_speed.py)."""

from __future__ import annotations

import math

import torch.nn.functional as F


def naive_relation_loss(s_qkv, t_qkv, mask, r):
    """Per relation: scaled dot products, softmax / log-softmax with masked_fill, then F.kl_div; summed over
    Q-Q, K-K, V-V. s_qkv, t_qkv: three ``[B, T, H]`` each; mask ``[B, T]``; r relation heads."""
    total = 0.0
    valid = mask.bool()
    for s, t in zip(s_qkv, t_qkv):
        rels = []
        for x in (s, t):
            b, n, h = x.shape
            x = x.float().view(b, n, r, h // r).transpose(1, 2)
            scores = x @ x.transpose(-1, -2) / math.sqrt(h // r)
            rels.append(scores.masked_fill(~valid[:, None, None, :], float("-inf")))
        log_p_s = F.log_softmax(rels[0], -1)
        p_t = F.softmax(rels[1], -1)
        kl = F.kl_div(log_p_s.masked_fill(~valid[:, None, None, :], 0), p_t, reduction="none").sum(-1)
        total = total + (kl * valid[:, None, :]).sum() / (valid.sum() * r)
    return total
