"""Load a teacher (any Hugging Face id or local folder) and pick its distillation layer."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from compress.architectures import ArchSpec, arch_spec
from compress.errors import UserError, first_line

log = logging.getLogger(__name__)

# The paper's relation-head counts: 48 for base-size teachers (hidden 768), 64 for large ones (1024).
BASE_RELATION_HEADS, LARGE_RELATION_HEADS = 48, 64


@dataclass
class Teacher:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: ArchSpec

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config


def load_teacher_config(name: str) -> tuple[PretrainedConfig, ArchSpec]:
    """The teacher's config and its architecture row; clear errors for a bad path or family."""
    path = Path(name)
    if path.exists() and not (path / "config.json").is_file():
        raise UserError(f"teacher {name} is not a model folder (no config.json in it): pass a Hugging Face model folder or id")
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load teacher '{name}' ({first_line(err)}): pass an existing model folder or a Hugging Face id") from None
    return config, arch_spec(config.model_type)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The teacher's tokenizer alone (preparing data needs it before the weights are loaded)."""
    if name.startswith(("/", ".", "~")) and not Path(name).expanduser().is_dir():
        raise UserError(f"{name} is not a folder: pass a model or tokenizer folder, or a Hugging Face id")
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as err:
        raise UserError(f"cannot load the tokenizer of '{name}' ({first_line(err)}): check the folder is complete") from None


def load_teacher(name: str, config: PretrainedConfig | None = None,
                 tokenizer: PreTrainedTokenizerBase | None = None) -> Teacher:
    """Model (base encoder, eval mode, frozen) and tokenizer of ``name`` (config, tokenizer: already loaded, optional)."""
    if config is None:
        config, spec = load_teacher_config(name)
    else:
        spec = arch_spec(config.model_type)
    try:
        model = AutoModel.from_pretrained(name, config=config)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(name)
    except Exception as err:  # safetensors, torch and tokenizers each raise their own types for a bad file
        raise UserError(f"cannot load teacher weights or tokenizer from '{name}' ({first_line(err)}): check the folder is complete") from None
    model.eval()
    model.requires_grad_(False)
    return Teacher(model=model, tokenizer=tokenizer, spec=spec)


def resolve_teacher_layer(value: int | str, num_layers: int, spec: ArchSpec) -> int:
    """The teacher layer to distil from, 1-based.

    ``last`` → the top layer. ``auto`` → the top layer for teachers of up to 12 layers, else the paper's
    upper-middle layer (21 of 24 for BERT-large, 19 of 24 for RoBERTa-/XLM-R-large). An int is taken as is.
    """
    if value == "last" or (value == "auto" and num_layers <= 12):
        return num_layers
    if value == "auto":
        return max(1, round(num_layers * spec.deep_layer_fraction))
    if not 1 <= int(value) <= num_layers:
        raise UserError(f"teacher layer {value} is out of range: the teacher has layers 1..{num_layers} (or use last/auto)")
    return int(value)


def _common_divisors(a: int, b: int) -> list[int]:
    g = math.gcd(a, b)
    return [d for d in range(1, g + 1) if g % d == 0]


def resolve_relation_heads(value: int | str, teacher_hidden: int, student_hidden: int) -> int:
    """Relation heads: given, or the paper's default (48; 64 for teachers of hidden ≥ 1024), moved to the
    nearest count that divides both hidden sizes (ties go to the larger count) and logged."""
    divisors = _common_divisors(teacher_hidden, student_hidden)
    if value != "auto":
        r = int(value)
        if r < 1 or teacher_hidden % r or student_hidden % r:
            near = sorted(divisors, key=lambda d: (abs(d - r), -d))[:3]
            raise UserError(
                f"{r} relation heads do not divide both hidden sizes (teacher {teacher_hidden}, student "
                f"{student_hidden}): use one of {', '.join(map(str, sorted(near)))}"
            )
        return r
    default = LARGE_RELATION_HEADS if teacher_hidden >= 1024 else BASE_RELATION_HEADS
    chosen = min(divisors, key=lambda d: (abs(d - default), -d))
    if chosen != default:
        log.info("relation heads: the default %d does not divide both hidden sizes (%d, %d); using %d",
                 default, teacher_hidden, student_hidden, chosen)
    return chosen


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total parameters and those in the input embeddings (the vocabulary table)."""
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel() if hasattr(model, "get_input_embeddings") else 0
    return {"total": total, "word_embeddings": embed, "non_embedding": total - embed}
