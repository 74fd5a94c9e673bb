"""The pruned teacher computed by masking instead of cutting: what a student cut out by compress.pruning must
compute at step 0. Written independently of compress.pruning's slicing: the teacher keeps its shapes; the
layers the plan drops are removed, every LayerNorm on the residual stream normalises over the kept channels
only and outputs zeros elsewhere, pruned heads get zero value projections (their context is zero), pruned FFN
neurons get zero input rows (GELU/ReLU of zero is zero), and an ELECTRA embedding projection writes zeros to
pruned channels. Its last hidden state restricted to the kept channels is then the student's."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from compress.architectures import ArchSpec, layer_list


class SubsetLayerNorm(nn.Module):
    """A LayerNorm over ``keep`` channels of [..., H]; zeros on the others."""

    def __init__(self, norm: nn.LayerNorm, keep: list[int]):
        super().__init__()
        self.norm, self.keep = norm, torch.tensor(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        out[..., self.keep] = F.layer_norm(x[..., self.keep], (len(self.keep),), self.norm.weight[self.keep],
                                           self.norm.bias[self.keep], self.norm.eps)
        return out


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def masked_teacher(teacher: nn.Module, spec: ArchSpec, plan) -> nn.Module:
    """A masked copy of ``teacher`` for ``plan`` (a compress.pruning.PrunePlan)."""
    model = copy.deepcopy(teacher).eval()
    hidden = model.config.to_dict()[spec.hidden_key]
    head_size = hidden // model.config.to_dict()[spec.heads_key]
    layers = layer_list(model, spec)
    _replace(model, spec.layers, nn.ModuleList([layers[i - 1] for i in plan.teacher_layers]))
    norm = getattr(model.embeddings, "LayerNorm", None)
    if norm is not None and tuple(norm.normalized_shape) == (hidden,):
        model.embeddings.LayerNorm = SubsetLayerNorm(norm, plan.hidden)
    project = getattr(model, "embeddings_project", None)
    pruned = sorted(set(range(hidden)) - set(plan.hidden))
    with torch.no_grad():
        if project is not None:
            project.weight[pruned] = 0
            project.bias[pruned] = 0
        for row, block in enumerate(layer_list(model, spec)):
            for path in spec.layer_norms:
                _replace(block, path, SubsetLayerNorm(block.get_submodule(path), plan.hidden))
            value = block.get_submodule(spec.value)
            for head in set(range(hidden // head_size)) - set(plan.heads[row]):
                value.weight[head * head_size:(head + 1) * head_size] = 0
                value.bias[head * head_size:(head + 1) * head_size] = 0
            ffn_in = block.get_submodule(spec.ffn_in)
            dropped = sorted(set(range(ffn_in.out_features)) - set(plan.neurons[row]))
            ffn_in.weight[dropped] = 0
            ffn_in.bias[dropped] = 0
    return model
