"""``compress export --runtime openvino``: OpenVINO IR, bf16 and NNCF INT8 on tiny distilled students (real
OpenVINO and NNCF), the same parity gates as ONNX Runtime's variants, and the errors around them."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from transformers import AutoTokenizer

from tests.cli_runner import TINY_DISTILL as SMALL
from tests.cli_runner import run_cli

ov = pytest.importorskip("openvino")


def _ops(xml) -> dict[str, int]:
    model = ov.Core().read_model(str(xml))
    counts: dict[str, int] = {}
    for op in model.get_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return counts


def test_openvino_variants_pass_the_parity_gates(distilled, capsys):
    from export.openvino_export import OpenVINOSession, cpu_has_bf16

    result = run_cli(["export", distilled, "--int8", "--runtime", "all"], capsys)
    assert result.code == 0, result.stderr
    variants = json.loads((distilled / "export" / "parity.json").read_text())["variants"]
    expected = {"fp32", "int8", "openvino-fp32", "openvino-int8"} | ({"openvino-bf16"} if cpu_has_bf16() else set())
    assert set(variants) == expected
    fp32, int8 = variants["openvino-fp32"], variants["openvino-int8"]
    # An honest FP32 variant: compiled to f32 even where OpenVINO would choose bf16 by itself.
    assert fp32["inference_precision"] == "f32" and fp32["max_abs_diff"] < 1e-4 and fp32["runtime"] == "openvino"
    assert int8["mean_cosine"] > 0.99 and int8["method"] == "nncf-static" and int8["size_bytes"] > 0
    if "openvino-bf16" in variants:
        bf16 = variants["openvino-bf16"]
        assert bf16["inference_precision"] == "bf16" and bf16["folder"] == "openvino-fp32"
        assert bf16["mean_cosine"] > 0.999 and bf16["max_abs_diff"] > fp32["max_abs_diff"]  # really computed in bf16
    # The INT8 IR is quantized (FakeQuantize before its matmuls); the FP32 IR is not.
    assert _ops(distilled / "export" / "openvino-int8" / "openvino_model.xml").get("FakeQuantize", 0) >= 4
    assert "FakeQuantize" not in _ops(distilled / "export" / "openvino-fp32" / "openvino_model.xml")
    # Each folder is complete on its own: IR, config, tokenizer, provenance; it agrees with ORT's FP32 on new input.
    folder = distilled / "export" / "openvino-fp32"
    assert {"openvino_model.xml", "openvino_model.bin", "config.json", "tokenizer.json", "provenance.json"} <= {
        p.name for p in folder.iterdir()}
    assert {"openvino", "nncf"} <= set(json.loads((folder / "provenance.json").read_text())["versions"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = {k: v.astype(np.int64) for k, v in tokenizer(["a first text", "and a second, longer one"], padding=True,
                                                       return_tensors="np").items()}
    session = ort.InferenceSession(str(distilled / "export" / "fp32" / "model.onnx"))
    names = {i.name for i in session.get_inputs()}
    ref = session.run(None, {k: v for k, v in enc.items() if k in names})[0]
    out = OpenVINOSession(folder, "fp32").run(["last_hidden_state"], enc)[0]
    keep = enc["attention_mask"].astype(bool)
    assert np.abs(out - ref)[keep].max() < 1e-4
    stage = json.loads((distilled / "manifest.json").read_text())["stages"]["export"]
    assert {"openvino-fp32", "openvino-int8"} <= set(stage["outputs"])
    # A later export for ONNX Runtime only replaces the set: the OpenVINO folders go with the old export.
    assert run_cli(["export", distilled], capsys).code == 0
    assert not (distilled / "export" / "openvino-fp32").exists()


@pytest.mark.parametrize("runtime, message", [
    ("tensorrt", "runtimes"),
    ("", None),  # empty: the default (onnxruntime)
])
def test_runtime_flag(distilled, runtime, message, capsys):
    result = run_cli(["export", distilled, "--runtime", runtime] if runtime else ["export", distilled], capsys)
    if message:
        assert result.code == 2 and message in result.stderr and "Traceback" not in result.stderr
    else:
        assert result.code == 0 and not (distilled / "export" / "openvino-fp32").exists()


def test_openvino_alone_writes_the_fp32_onnx_it_converts(distilled, capsys):
    # OpenVINO's IR is converted from the FP32 ONNX export, which is written too (as --runtime's help says)
    assert run_cli(["export", distilled, "--int8", "--runtime", "openvino"], capsys).code == 0
    variants = json.loads((distilled / "export" / "parity.json").read_text())["variants"]
    assert {"fp32", "openvino-fp32", "openvino-int8"} <= set(variants) and "int8" not in variants
    assert (distilled / "export" / "fp32" / "model.onnx").is_file()


def test_missing_openvino_is_one_line_naming_the_extra(distilled):
    """Without openvino installed (simulated by blocking the import), --runtime openvino says what to install."""
    code = ("import sys\nsys.modules['openvino'] = None\nsys.modules['nncf'] = None\n"
            "from compress.cli import main\nsys.argv = ['compress', 'export', sys.argv[1], '--runtime', 'openvino']\nmain()\n")
    result = subprocess.run([sys.executable, "-c", code, str(distilled)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "openvino extra" in last and 'pip install -e ".[openvino]"' in last and "Traceback" not in result.stderr
    assert not (distilled / "export").exists()  # refused before anything was built


def test_bench_times_and_scores_openvino_beside_onnxruntime(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """OpenVINO variants go through the same harness and report as ONNX Runtime's: one CPU table, scored on the
    same tasks, their runtime and ISA flags in the machine facts."""
    from bench.report import validate_results
    from export.openvino_export import cpu_has_bf16
    from reference.tiny_models import SAMPLE_TEXT

    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *SMALL], capsys).code == 0
    assert run_cli(["export", run, "--int8", "--runtime", "all"], capsys).code == 0
    task = tmp_path / "fid.yaml"
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in SAMPLE_TEXT[:40]))
    task.write_text("kind: fidelity\ndata: {test: test.jsonl}\n")
    result = run_cli(["bench", run, "--task", task, "--batch-sizes", "1,4", "--seq-lengths", "16", "--min-time", "0.01",
                      "--warmup", "1", "min_runs=3"], capsys)
    assert result.code == 0, result.stderr
    results = json.loads((run / "bench" / "results.json").read_text())
    validate_results(results)
    formats = {v["name"]: (v["format"], v["precision"]) for v in results["variants"]}
    expected = {"student-fp32": ("onnx", "fp32"), "student-int8": ("onnx", "int8"),
                "student-openvino-fp32": ("openvino", "fp32"), "student-openvino-int8": ("openvino", "int8")}
    if cpu_has_bf16():
        expected["student-openvino-bf16"] = ("openvino", "bf16")
    assert formats == expected
    timed = {t["variant"] for t in results["timings"] if t["provider"] == "cpu"}
    assert timed == set(expected) and len(results["timings"]) == 2 * len(expected)
    used = {t["variant"]: t["providers_used"][0] for t in results["timings"]}
    assert used["student-openvino-fp32"] == "OpenVINO CPU (f32)" and used["student-fp32"] == "CPUExecutionProvider"
    scores = {(s["variant"], s["metric"]): s["value"] for s in results["scores"] if s["language"] is None}
    assert scores[("student-openvino-fp32", "similarity_correlation")] == pytest.approx(
        scores[("student-fp32", "similarity_correlation")], abs=1e-4)
    machine = results["machine"]
    assert "openvino" in machine["versions"] and {"avx512_vnni", "avx512_bf16", "amx_int8"} <= set(machine["isa"])
    assert "student-openvino-int8" in (run / "bench" / "results.md").read_text()


def test_openvino_qat_ships_the_model_it_trained(distilled, capsys):
    """--qat for OpenVINO: NNCF's quantizers on the PyTorch student, retrained with the relation loss, converted to
    an INT8 IR that computes what the trained model computes; no ORT QAT when it is not asked for."""
    from export.openvino_export import cpu_has_bf16

    result = run_cli(["export", distilled, "--qat-steps", "12", "--runtime", "all", "--int8", "--qat-runtime", "openvino",
                      "qat_train.lr=1e-4",
                      "qat_train.log_every=1", "qat_train.batch_size=8"], capsys)
    assert result.code == 0, result.stderr
    variants = json.loads((distilled / "export" / "parity.json").read_text())["variants"]
    # --qat-runtime openvino: QAT for OpenVINO only, though ORT's INT8 is exported too
    assert set(variants) == {"fp32", "int8", "openvino-fp32", "openvino-int8", "openvino-int8-qat"} | (
        {"openvino-bf16"} if cpu_has_bf16() else set())
    losses = [json.loads(line)["loss"] for line in
              (distilled / "export" / "qat-openvino" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and all(np.isfinite(losses))
    qat = variants["openvino-int8-qat"]
    assert qat["method"] == "nncf+qat" and qat["runtime"] == "openvino" and qat["qat_final_loss"] == pytest.approx(losses[-1])
    # Retraining changed the quantized model (whether it helps is measured on real models: docs/benchmarks.md).
    assert qat["before_qat"]["mean_cosine"] > 0.99 and qat["before_qat"]["mean_cosine"] != qat["mean_cosine"]
    assert qat["inference_precision"] == "f32" and qat["mean_cosine"] > 0.98
    # The IR is the trained model: far closer to it than the INT8 error to FP32 is.
    assert qat["ir_vs_trained_mean_cosine"] > 0.9999 and qat["ir_vs_trained_relative"] < 0.5
    ops = _ops(distilled / "export" / "openvino-int8-qat" / "openvino_model.xml")
    assert ops.get("FakeQuantize", 0) >= 8 and ops.get("ScaledDotProductAttention", 0) == 2  # fused as the ONNX IR is
    assert not (distilled / "export" / "int8-qat").exists() and not (distilled / "export" / "qat").exists()
    assert (distilled / "deploy" / "openvino" / "openvino_model_qint8_quantized_qat.xml").is_file()


def test_openvino_qat_resumes(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """Both QATs in one export, each with its own checkpoint; --resume continues each (steps are not redone)."""
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *SMALL], capsys).code == 0
    qat = ["--qat", "--runtime", "all", "qat_train.batch_size=4", "qat_train.log_every=1", "qat_train.checkpoint_every=2"]
    assert run_cli(["export", run, "--qat-steps", "2", *qat], capsys).code == 0
    assert run_cli(["export", run, "--qat-steps", "4", "--resume", *qat], capsys).code == 0
    for work in ("qat", "qat-openvino"):
        metrics = (run / "export" / work / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in metrics] == [1, 2, 3, 4]
    variants = json.loads((run / "export" / "parity.json").read_text())["variants"]
    assert {"int8-qat", "openvino-int8-qat"} <= set(variants)
    assert variants["openvino-int8-qat"]["qat_steps"] == 4 and variants["int8-qat"]["qat_final_loss"] is not None


@pytest.mark.parametrize("model_type", ["bert", "camembert", "distilbert", "electra", "mpnet", "roberta", "xlm-roberta"])
def test_openvino_qat_graph_for_every_family(model_type, tiny_bert_dir, tmp_path):
    """export.openvino_qat on a tiny random model of each family in compress/architectures.py: NNCF's PyTorch
    quantizers go on, and the converted IR (quantized, with the FP32 IR's inputs) computes what they compute."""
    import torch
    from transformers import AutoConfig, AutoModel

    from compress.architectures import ARCHITECTURES
    from compress.student import student_config
    from export.onnx_export import export_fp32
    from export.openvino_export import OpenVINOSession, convert_to_ir, input_names
    from export.openvino_qat import quantize_for_training, save_ir
    from export.parity import compare, encode
    from reference.tiny_models import SAMPLE_TEXT

    assert model_type in ARCHITECTURES
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    base = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path / model_type
    AutoModel.from_config(student_config(base, ARCHITECTURES[model_type], layers=2, hidden=32, heads=2)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ir = convert_to_ir(export_fp32(folder, tmp_path / "onnx", task="feature-extraction", opset=18), tmp_path / "ir")
    names = input_names(ir)  # the shared BERT tokenizer gives token types that not every family takes
    batches = [{k: v for k, v in batch.items() if k in names} for batch in encode(tokenizer, SAMPLE_TEXT[:24])]
    model = quantize_for_training(AutoModel.from_pretrained(folder), names, batches[:1])
    out = save_ir(model, names, batches[0], tmp_path / "qat", ir)
    assert input_names(out) == names and _ops(out / "openvino_model.xml").get("FakeQuantize", 0) >= 8
    assert compare(model, OpenVINOSession(out, "fp32"), batches).mean_cosine > 0.9999
