"""The distillation step's loss, written once: a student's Q/K/V relations against a teacher layer's.

``compress distill``, export's quantization-aware retraining, ``compress evaluate``'s relation KL and the
benchmarks all call :class:`RelationDistillation`; none of them writes the teacher forward, the id mapping
or the loss call again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from compress.architectures import ArchSpec
from compress.qkv_capture import forward_to_qkv, forward_with_qkv
from compress.relation_loss import Kernel, relation_kd_loss

QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
StudentQKV = Callable[[torch.Tensor, torch.Tensor], QKV]  # (ids, mask) [B, T] → Q, K, V [B, T, H]


@dataclass
class RelationDistillation:
    """What a step compares: the frozen ``teacher``'s Q/K/V at ``teacher_layer`` (0-based) with a student's,
    as ``relation_heads`` relation heads (Q-Q, K-K, V-V KL, weighted by ``weights``).

    ``to_teacher`` ``[V_student]`` maps a trimmed student's ids to the teacher's (None: the same vocabulary).
    """

    teacher: torch.nn.Module
    teacher_spec: ArchSpec
    teacher_layer: int
    relation_heads: int
    weights: Sequence[float] = (1.0, 1.0, 1.0)
    to_teacher: torch.Tensor | None = None
    kernel: Kernel = "torch"  # the relation loss's implementation (compress.relation_loss.resolve_relation_kernel)

    def teacher_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return ids if self.to_teacher is None else self.to_teacher[ids]

    def teacher_qkv(self, ids: torch.Tensor, mask: torch.Tensor) -> QKV:
        """The teacher's Q, K, V ``[B, T, H_t]`` for student ids ``[B, T]``; no gradients; stops at the layer."""
        with torch.no_grad():
            return forward_to_qkv(self.teacher, self.teacher_spec, self.teacher_layer, self.teacher_ids(ids), mask)

    def loss(self, student_qkv: StudentQKV, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(scalar loss, {"qq", "kk", "vv"} parts) of one batch; ``student_qkv(ids, mask)`` runs the student
        (a plain function or a DDP-wrapped module) as far as the Q/K/V it imitates."""
        return relation_kd_loss(student_qkv(ids, mask), self.teacher_qkv(ids, mask), mask, self.relation_heads,
                                self.weights, self.kernel)

    def loss_with_outputs(self, student: torch.nn.Module, spec: ArchSpec, layer: int, ids: torch.Tensor,
                          mask: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        """The same loss from full forward passes of both models (the student's Q/K/V at ``layer``), with their
        last hidden states ``[B, T, H]`` (student, teacher) for objectives on the outputs (QAT)."""
        with torch.no_grad():
            t_out, t_qkv = forward_with_qkv(self.teacher, self.teacher_spec, self.teacher_layer, self.teacher_ids(ids), mask)
        s_out, s_qkv = forward_with_qkv(student, spec, layer, ids, mask)
        loss, parts = relation_kd_loss(s_qkv, t_qkv, mask, self.relation_heads, self.weights, self.kernel)
        return loss, parts, s_out, t_out
