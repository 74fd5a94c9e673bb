"""Run an encoder only as far as one layer's Q/K/V projections, and return them.

Forward hooks on the chosen layer's query, key and value projections record their outputs; once all
three have run, the hook raises ``_StopForward`` so nothing above them (the rest of that layer, the
layers above it, pooling) is computed. Hooks are always removed, also when the forward fails.
"""

from __future__ import annotations

import torch

from compress.architectures import ArchSpec, qkv_modules


class _StopForward(Exception):
    """Raised from a hook once Q, K and V are captured, to end the forward pass early."""


def _run_capturing(model, spec, layer_index, input_ids, attention_mask, stop: bool):
    captured: dict[int, torch.Tensor] = {}

    def make_hook(slot: int):
        def hook(_module, _inputs, output):
            captured[slot] = output
            if stop and len(captured) == 3:
                raise _StopForward

        return hook

    output = None
    handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(qkv_modules(model, spec, layer_index))]
    try:
        output = model(input_ids=input_ids, attention_mask=attention_mask)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if len(captured) != 3:
        raise RuntimeError(f"layer {layer_index}: the forward pass did not reach all of Q, K and V")
    return output, (captured[0], captured[1], captured[2])


def forward_to_qkv(
    model: torch.nn.Module,
    spec: ArchSpec,
    layer_index: int,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V of layer ``layer_index`` (0-based), each ``[B, T, H]`` (heads concatenated); stops there.

    input_ids, attention_mask: ``[B, T]``. Gradients flow as in an ordinary forward pass.
    """
    return _run_capturing(model, spec, layer_index, input_ids, attention_mask, stop=True)[1]


def forward_with_qkv(
    model: torch.nn.Module, spec: ArchSpec, layer_index: int, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The whole forward pass: (last hidden state ``[B, T, H]``, (Q, K, V) of layer ``layer_index``)."""
    output, qkv = _run_capturing(model, spec, layer_index, input_ids, attention_mask, stop=False)
    return output.last_hidden_state, qkv


def drop_layers_above(model: torch.nn.Module, spec: ArchSpec, layer_index: int) -> None:
    """Delete layers above ``layer_index`` (0-based) in place: they never run, so they need no memory."""
    layers = model.get_submodule(spec.layers)
    del layers[layer_index + 1 :]
