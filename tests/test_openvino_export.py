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
    from tests.tiny_models import SAMPLE_TEXT

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
