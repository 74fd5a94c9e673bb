"""Q/K/V capture: the right tensors, nothing above them computed, hooks always removed."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

from compress.architectures import arch_spec, layer_list, qkv_modules
from compress.errors import UserError
from compress.qkv_capture import drop_layers_above, forward_to_qkv


@pytest.mark.parametrize("layer", [0, 2])
def test_captured_projections_match_a_full_forward(tiny_teacher_dir, layer):
    model = AutoModel.from_pretrained(tiny_teacher_dir).eval()
    spec = arch_spec(model.config.model_type)
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]]) + 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
        q, k, v = forward_to_qkv(model, spec, layer, ids, mask)
        for got, proj in zip((q, k, v), qkv_modules(model, spec, layer)):
            assert got.shape == (2, 5, model.config.hidden_size)
            torch.testing.assert_close(got, proj(hidden))


def test_nothing_above_the_projections_runs_and_hooks_are_removed(tiny_bert_dir):
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    spec = arch_spec("bert")
    layers = layer_list(model, spec)
    calls = []
    watchers = [layers[1].attention.output.register_forward_hook(lambda *a: calls.append("attn-out")),
                layers[2].register_forward_hook(lambda *a: calls.append("layer-2"))]
    ids, mask = torch.tensor([[4, 5, 6]]), torch.ones(1, 3, dtype=torch.long)
    forward_to_qkv(model, spec, 1, ids, mask)
    assert calls == []
    for w in watchers:
        w.remove()
    assert all(not m._forward_hooks for m in model.modules())


def test_dropping_layers_keeps_the_projections(tiny_bert_dir):
    full = AutoModel.from_pretrained(tiny_bert_dir).eval()
    cut = AutoModel.from_pretrained(tiny_bert_dir).eval()
    spec = arch_spec("bert")
    drop_layers_above(cut, spec, 1)
    assert len(layer_list(cut, spec)) == 2
    ids, mask = torch.tensor([[4, 5, 6, 7]]), torch.ones(1, 4, dtype=torch.long)
    with torch.no_grad():
        for a, b in zip(forward_to_qkv(full, spec, 1, ids, mask), forward_to_qkv(cut, spec, 1, ids, mask)):
            torch.testing.assert_close(a, b)


def test_unsupported_architecture_lists_the_supported_ones():
    with pytest.raises(UserError) as err:
        arch_spec(AutoConfig.for_model("gpt2").model_type)
    assert "gpt2" in str(err.value) and "bert" in str(err.value) and "xlm-roberta" in str(err.value)
