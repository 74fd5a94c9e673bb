"""Quantization-aware retraining: the fake quantization is ORT's dynamic INT8, and retraining lowers the loss."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModel

from compress.architectures import arch_spec
from export.onnx_export import export_fp32
from export.qat import convert, fake_quant_activation, fake_quant_weight, prepare
from export.quantize import quantize_dynamic_int8
from tests.cli_runner import run_cli

SMALL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "4", "--max-length", "32", "--steps", "2"]


def test_fake_quant_formulas():
    w = torch.tensor([[0.5, -1.0, 0.26], [2.0, 0.0, -0.01]])
    q = fake_quant_weight(w)
    # Row scales 1/127 and 2/127: values land on multiples of them, the row maximum is kept exactly.
    torch.testing.assert_close(q[0] * 127, torch.round(w[0] * 127))
    assert q[1, 0] == 2.0 and q[0, 1] == -1.0
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    fq = fake_quant_activation(x)
    scale = 4.0 / 255
    assert fq[1] == 0.0  # zero stays exactly representable
    assert torch.all((fq - x).abs() <= scale / 2 + 1e-6)


@pytest.mark.parametrize("embeddings", [False, True], ids=["linears", "linears+embeddings"])
def test_fake_quantized_pytorch_equals_ort_dynamic_int8(embeddings, tiny_teacher_dir, tmp_path):
    model = AutoModel.from_pretrained(tiny_teacher_dir).eval()
    spec = arch_spec(model.config.model_type)
    fp32 = export_fp32(tiny_teacher_dir, tmp_path / "fp32", task="feature-extraction", opset=18) / "model.onnx"
    quantize_dynamic_int8(fp32, tmp_path / "int8.onnx", reduce_range=False, quantize_embeddings=embeddings)
    session = ort.InferenceSession(str(tmp_path / "int8.onnx"))
    ids = torch.randint(5, 300, (3, 20))
    mask = torch.ones_like(ids)
    mask[2, 10:] = 0
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": np.zeros_like(ids.numpy())}
    int8 = session.run(None, {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}})[0]
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        state = prepare(model, spec, embeddings=embeddings)  # with the INT8 embedding table when ORT has one
        fake = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        convert(state)
        restored = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    valid = mask.numpy().astype(bool)
    # Equal up to float rounding (BERT: < 1e-6 everywhere), except where an activation lands on a rounding
    # boundary and the flip propagates; on average an order of magnitude closer than INT8 is to FP32.
    assert np.abs(int8 - fake)[valid].mean() < 0.2 * np.abs(int8 - plain)[valid].mean()
    assert np.array_equal(restored, plain)  # convert() gives back the float model


@pytest.mark.parametrize("embeddings", ["false", "true"], ids=["linears", "linears+embeddings"])
def test_export_qat_lowers_the_loss_and_matches_fake_quant(embeddings, tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    result = run_cli(["export", run_dir, "--int8", "--qat", "--qat-steps", "20", "qat_train.lr=1e-3",
                      "qat_train.log_every=1", "qat_train.batch_size=8", f"quantize_embeddings={embeddings}"], capsys)
    assert result.code == 0, result.stderr
    losses = [json.loads(line)["loss"] for line in (run_dir / "export" / "qat" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20 and sum(losses[-5:]) < sum(losses[:5])
    variant = json.loads((run_dir / "export" / "parity.json").read_text())["variants"]["int8-qat"]
    assert variant["method"] == "dynamic+qat" and variant["fused"]  # QAttention (Q, K, V) + 3 integer matmuls per layer
    assert variant["op_counts"]["QAttention"] == 2 and variant["op_counts"]["MatMulInteger"] == 6
    assert variant["ort_vs_fake_quant_max_abs_diff"] < 0.05
    assert variant["ort_vs_fake_quant_relative"] < 0.2  # ORT's INT8 is far closer to the fake-quant model than to FP32
    assert (run_dir / "export" / "int8-qat" / "model.onnx").exists()
    assert variant["quantized_embeddings"] == (embeddings == "true")
    assert variant["op_counts"].get("DequantizeLinear", 0) == (3 if embeddings == "true" else 0)  # word, position, type
