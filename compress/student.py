"""Build a student of the teacher's family, vocabulary and tokenizer, with a chosen shape."""

from __future__ import annotations

import logging

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

from compress.architectures import ArchSpec, layer_list
from compress.errors import UserError

log = logging.getLogger(__name__)


def student_config(
    teacher_config: PretrainedConfig,
    spec: ArchSpec,
    *,
    layers: int,
    hidden: int,
    heads: int,
    intermediate_size: int | None = None,
) -> PretrainedConfig:
    """The teacher's config with depth, width, heads and FFN size (default 4 × hidden) replaced."""
    if layers < 1:
        raise UserError(f"student layers must be at least 1, got {layers}")
    if hidden < 1 or heads < 1 or hidden % heads:
        raise UserError(
            f"student hidden size {hidden} is not divisible by {heads} attention heads: "
            "choose --hidden as a multiple of --heads"
        )
    values = teacher_config.to_dict()
    for key in ("_name_or_path", "architectures", "transformers_version"):
        values.pop(key, None)
    values[spec.num_layers_key] = layers
    values[spec.hidden_key] = hidden
    values[spec.heads_key] = heads
    values[spec.ffn_key] = intermediate_size or 4 * hidden
    return type(teacher_config).from_dict(values)


def build_student(config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """A randomly initialised base model (the paper's default) for ``config``, reproducible from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(config)


def init_from_teacher_layers(
    student: PreTrainedModel, teacher: PreTrainedModel, spec: ArchSpec, teacher_layers: list[int]
) -> None:
    """Copy the embeddings and the given teacher layers (1-based, one per student layer) into the student.

    Needs equal hidden and FFN sizes; the attention head count may differ only if the projections'
    shapes agree (they do: heads are concatenated in one Linear).
    """
    student_layers = layer_list(student, spec)
    teacher_all = layer_list(teacher, spec)
    if len(teacher_layers) != len(student_layers):
        raise UserError(
            f"student.init_from_teacher_layers lists {len(teacher_layers)} layers but the student has "
            f"{len(student_layers)}: give one teacher layer per student layer"
        )
    s_cfg, t_cfg = student.config.to_dict(), teacher.config.to_dict()
    for key in (spec.hidden_key, spec.ffn_key):
        if s_cfg[key] != t_cfg[key]:
            raise UserError(
                f"cannot initialise from teacher layers: student {key}={s_cfg[key]} but teacher {key}={t_cfg[key]}"
                " (widths must match; leave student.init_from_teacher_layers unset for random init)"
            )
    for index in teacher_layers:
        if not 1 <= index <= len(teacher_all):
            raise UserError(f"teacher layer {index} is out of range 1..{len(teacher_all)} in init_from_teacher_layers")
    teacher_state = teacher.state_dict()
    layers_prefix = spec.layers + "."
    copied = {}
    for name in student.state_dict():
        if name.startswith(layers_prefix):
            student_index, rest = name[len(layers_prefix) :].split(".", 1)
            source = f"{layers_prefix}{teacher_layers[int(student_index)] - 1}.{rest}"
        else:
            source = name
        if source in teacher_state:
            copied[name] = teacher_state[source]
    missing = student.load_state_dict(copied, strict=False).missing_keys
    log.info("initialised student from teacher layers %s (%d tensors copied, %d left random)",
             teacher_layers, len(copied), len(missing))
