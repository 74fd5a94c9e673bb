"""compress bench with a provider this onnxruntime lacks (a GPU machine with a CUDA torch and a CPU-only
onnxruntime): with --torch the PyTorch rows are timed and a one-line warning replaces the error; without --torch it
stays an error; the CPU provider's path is unchanged. On the CPU, the missing provider is simulated by hiding the CPU
provider from onnxruntime.get_available_providers()."""

import json
import logging

import onnxruntime as ort
import pytest

from tests.cli_runner import TINY_DISTILL, run_cli

FAST = ["--batch-sizes", "1,2", "--seq-lengths", "16", "--min-time", "0", "--warmup", "0", "min_runs=2",
        "--rounds", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert_dir_shared):
    """A distilled tiny run with its FP32 ONNX export."""
    from reference.tiny_models import write_corpus

    base = tmp_path_factory.mktemp("bench-providers")
    corpus = write_corpus(base / "corpus.txt")

    class Capture:  # a module-scoped fixture cannot use capsys; run_cli only calls readouterr()
        def readouterr(self):
            return type("Out", (), {"out": "", "err": ""})()

    folder = base / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir_shared, "--corpus", corpus, "--run-dir", folder,
                    *TINY_DISTILL], Capture()).code == 0
    assert run_cli(["export", folder], Capture()).code == 0
    return folder


def _timed(out):
    results = json.loads((out / "results.json").read_text())
    return results, {(t["variant"], t["provider"]) for t in results["timings"]}


def test_cpu_provider_times_onnx_and_torch(run, tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="bench.stage")
    result = run_cli(["bench", run, "--torch", *FAST, "--out", tmp_path / "cpu"], capsys)
    assert result.code == 0, result.stderr
    results, timed = _timed(tmp_path / "cpu")
    assert {("student-fp32", "cpu"), ("student-torch-fp32", "cpu"), ("teacher-torch-fp32", "cpu")} <= timed
    assert len(results["timings"]) == len(results["variants"]) * 2  # every variant at both batch sizes
    assert "not available" not in caplog.text


def test_missing_provider_with_torch_times_pytorch_and_warns(run, tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider"])
    caplog.set_level(logging.WARNING, logger="bench.stage")
    result = run_cli(["bench", run, "--torch", *FAST, "--out", tmp_path / "torch-only"], capsys)
    assert result.code == 0, result.stderr
    results, timed = _timed(tmp_path / "torch-only")
    assert timed == {("student-torch-fp32", "cpu"), ("teacher-torch-fp32", "cpu")}
    assert all(t["providers_used"][0].startswith("torch") for t in results["timings"])
    warnings = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "CPUExecutionProvider" in warnings[0] and "PyTorch" in warnings[0]


def test_missing_provider_without_torch_is_still_an_error(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider"])
    result = run_cli(["bench", run, *FAST, "--out", tmp_path / "none"], capsys)
    assert result.code == 2
    assert "error: provider 'cpu' (CPUExecutionProvider) is not available" in result.stderr
    assert not (tmp_path / "none" / "results.json").exists()
