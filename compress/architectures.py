"""Where each supported encoder keeps its layers and its query/key/value projections.

One row per Hugging Face ``model_type``. Adding an encoder means adding a row here: the capture code,
the student builder and the teacher-layer rule read nothing else about the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compress.errors import UserError


@dataclass(frozen=True)
class ArchSpec:
    """Module paths (dotted, relative to the base model / to one layer) and config key names."""

    layers: str  # ModuleList of Transformer layers, relative to the base model
    query: str  # relative to one layer
    key: str
    value: str
    # The paper's upper-middle teacher layer for deep (24-layer) teachers, as a fraction of depth:
    # layer 21 of 24 for BERT-large, 19 of 24 for RoBERTa-large and XLM-R-large.
    deep_layer_fraction: float = 21 / 24
    num_layers_key: str = "num_hidden_layers"
    hidden_key: str = "hidden_size"
    heads_key: str = "num_attention_heads"
    ffn_key: str = "intermediate_size"
    # What structured pruning (compress.pruning) reads and cuts, relative to one layer: the attention's output
    # projection, the FFN's two Linears, the LayerNorms on the residual stream; and, relative to the base model, a
    # per-head tensor shared by every layer (MPNet's relative position bias, [buckets, heads]).
    attention_output: str = "attention.output.dense"
    ffn_in: str = "intermediate.dense"
    ffn_out: str = "output.dense"
    layer_norms: tuple[str, ...] = ("attention.output.LayerNorm", "output.LayerNorm")
    shared_head_bias: str | None = None


_BERT_STYLE = dict(
    layers="encoder.layer", query="attention.self.query", key="attention.self.key", value="attention.self.value"
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec(**_BERT_STYLE),
    "roberta": ArchSpec(**_BERT_STYLE, deep_layer_fraction=19 / 24),
    "xlm-roberta": ArchSpec(**_BERT_STYLE, deep_layer_fraction=19 / 24),
    "camembert": ArchSpec(**_BERT_STYLE, deep_layer_fraction=19 / 24),
    "electra": ArchSpec(**_BERT_STYLE),
    "mpnet": ArchSpec(layers="encoder.layer", query="attention.attn.q", key="attention.attn.k", value="attention.attn.v",
                      attention_output="attention.attn.o", layer_norms=("attention.LayerNorm", "output.LayerNorm"),
                      shared_head_bias="encoder.relative_attention_bias"),
    "distilbert": ArchSpec(
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        num_layers_key="n_layers",
        hidden_key="dim",
        heads_key="n_heads",
        ffn_key="hidden_dim",
        attention_output="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        layer_norms=("sa_layer_norm", "output_layer_norm"),
    ),
}


def arch_spec(model_type: str) -> ArchSpec:
    """The table row for ``model_type``, or a UserError listing the supported architectures."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise UserError(
            f"unsupported architecture '{model_type}': supported are {supported} "
            "(add a row to compress/architectures.py for another encoder)"
        ) from None


def layer_list(model: torch.nn.Module, spec: ArchSpec) -> torch.nn.ModuleList:
    """The model's Transformer layers, ``[num_layers]`` modules."""
    return model.get_submodule(spec.layers)


def qkv_modules(model: torch.nn.Module, spec: ArchSpec, layer_index: int) -> tuple[torch.nn.Module, ...]:
    """(query, key, value) projection modules of layer ``layer_index`` (0-based)."""
    layer = layer_list(model, spec)[layer_index]
    return tuple(layer.get_submodule(path) for path in (spec.query, spec.key, spec.value))
