"""Build a student of the teacher's family, vocabulary and tokenizer, with a chosen shape."""

from __future__ import annotations

import logging

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

from compress.architectures import ArchSpec
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
    if values.get("embedding_size") == teacher_config.to_dict()[spec.hidden_key]:  # ELECTRA's embeddings as wide as
        values["embedding_size"] = hidden  # its layers stay so (no projection the teacher does not have)
    return type(teacher_config).from_dict(values)


def build_student(config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """A randomly initialised base model (the paper's default) for ``config``, reproducible from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(config)
