"""compress bench end to end on tiny runs: every exported variant timed on the CPU provider and scored,
the report files, several runs in one report, PyTorch references, and bad input."""

import json
import logging
import subprocess
import sys

import pytest

from bench.report import validate_results
from tests.cli_runner import run_cli
from tests.test_finetune import write_toy_task

SMALL = ["--layers", "2", "--hidden", "32", "--heads", "4", "--batch-size", "4", "--max-length", "32", "--steps", "3"]
FAST = ["--batch-sizes", "1,4", "--seq-lengths", "16,32", "--min-time", "0.01", "--warmup", "1", "min_runs=3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert_dir_shared):
    """Two distilled runs; the first also has INT8, its teacher and a fine-tuned classifier exported."""
    base = tmp_path_factory.mktemp("bench")
    corpus = base / "corpus.txt"
    from reference.tiny_models import write_corpus

    write_corpus(corpus)
    spec = write_toy_task(base, epochs=1, sizes=(64, 16, 40))
    (base / "fid.yaml").write_text("kind: fidelity\ndata: {test: test.jsonl}\n")

    class Capture:  # a module-scoped fixture cannot use capsys; run_cli only calls readouterr()
        def readouterr(self):
            return type("Out", (), {"out": "", "err": ""})()

    cap = Capture()
    made = []
    for name in ("a", "b"):
        run = base / name
        assert run_cli(["distill", "--teacher", tiny_bert_dir_shared, "--corpus", corpus, "--run-dir", run, *SMALL], cap).code == 0
        made.append(run)
    a = made[0]
    assert run_cli(["export", a, "--int8"], cap).code == 0
    assert run_cli(["export", a, "--model", "teacher"], cap).code == 0
    assert run_cli(["finetune", a, "--task", spec, "--name", "toy"], cap).code == 0
    assert run_cli(["export", a, "--model", "toy", "--int8"], cap).code == 0
    assert run_cli(["export", made[1]], cap).code == 0
    return {"a": a, "b": made[1], "toy": spec, "fid": base / "fid.yaml", "base": base}


def test_bench_one_run(runs, capsys):
    a = runs["a"]
    result = run_cli(["bench", a, "--task", runs["toy"], "--task", runs["fid"], *FAST], capsys)
    assert result.code == 0, result.stderr
    results = json.loads((a / "bench" / "results.json").read_text())
    validate_results(results)
    names = {v["name"] for v in results["variants"]}
    assert names == {"student-fp32", "student-int8", "teacher-fp32", "toy-fp32", "toy-int8"}
    assert len(results["timings"]) == len(names) * 4  # 2 batches × 2 lengths on the CPU provider
    assert all(t["providers_used"][0] == "CPUExecutionProvider" and t["runs"] >= 3 for t in results["timings"])
    # every row also times the request as a user sends it (text in, embedding out), with the same discipline
    assert all(t["end_to_end"]["runs"] >= 3 and t["end_to_end"]["p50_ms"] > 0 for t in results["timings"])
    # one thread count for every runtime, chosen once (the physical cores available) and stated
    from bench.machine import available_cores

    threads = results["settings"]["threads"]
    assert threads == available_cores() and results["settings"]["threads_from"] == "physical cores"
    assert results["machine"]["threads"] == threads and {t["threads"] for t in results["timings"]} == {threads}
    assert results["recommendation"]["providers"][0]["provider"] == "cpu"
    scores = {(s["variant"], s["task"], s["metric"]): s["value"] for s in results["scores"] if s["language"] is None}
    # Encoders are scored on every task, the fine-tuned classifier on its own task only (by its head).
    assert ("student-int8", "toy", "accuracy") in scores and ("student-int8", "fid", "similarity_correlation") in scores
    assert ("toy-int8", "toy", "accuracy") in scores and not any(k[0] == "toy-int8" and k[1] == "fid" for k in scores)
    # Fidelity is against the run's teacher: its own export matches it exactly.
    assert scores[("teacher-fp32", "fid", "similarity_correlation")] == pytest.approx(1.0, abs=1e-5)
    assert scores[("teacher-fp32", "fid", "cosine_min")] == pytest.approx(1.0, abs=1e-5)
    for name in ("results.csv", "results.md", "latency_vs_accuracy.png", "throughput_vs_batch.png"):
        assert (a / "bench" / name).stat().st_size > 200, name
    md = (a / "bench" / "results.md").read_text()
    assert "## Which model to ship" in md and "student-int8" in md
    assert f"Threads: every runtime ran at **{threads}**" in md and "(end-to-end p50)" in md
    assert "report:" in result.stdout and "student-int8" in result.stdout
    assert json.loads((a / "manifest.json").read_text())["stages"]["bench"]["status"] == "complete"


def test_bench_several_runs_and_torch(runs, capsys):
    out = runs["base"] / "compare"
    args = ["bench", runs["a"], runs["b"], "--torch", "--task", runs["toy"], "--batch-sizes", "2", "--seq-lengths", "16",
            "--min-time", "0.01", "--warmup", "1", "min_runs=3", "--out", out]
    result = run_cli(args, capsys)
    assert result.code == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    names = {v["name"] for v in results["variants"]}
    assert {"a/student-fp32", "b/student-fp32", "a/student-torch-fp32", "b/teacher-torch-fp32"} <= names
    torch_rows = [t for t in results["timings"] if "torch" in t["variant"]]
    assert torch_rows and all(t["providers_used"][0].startswith("torch") for t in torch_rows)
    assert all(t["end_to_end"]["runs"] >= 3 for t in results["timings"])  # PyTorch's rows too
    assert results["settings"]["threads_from"] == "physical cores"
    variants = {v["name"]: v for v in results["variants"]}
    assert variants["a/student-torch-fp32"]["parameters"] > 0 and variants["a/student-torch-fp32"]["format"] == "torch"


def test_bench_pools_alternating_rounds(runs, capsys):
    """--rounds R times every variant R times in turn, min_runs / R calls each, and a row pools the R rounds."""
    out = runs["base"] / "rounds"
    args = ["bench", runs["a"], "--rounds", "4", "--batch-sizes", "1", "--seq-lengths", "16", "--min-time", "0",
            "--warmup", "0", "min_runs=4", "--threads", "1", "--out", out]
    result = run_cli(args, capsys)
    assert result.code == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["rounds"] == 4
    assert (results["settings"]["threads"], results["settings"]["threads_from"]) == (1, "bench.threads")
    assert [t["end_to_end"]["runs"] for t in results["timings"]] == [4] * len(results["variants"])
    # min_time 0: each round stops after its one call, so every row holds exactly one sample per round
    assert [t["runs"] for t in results["timings"]] == [4] * len(results["variants"])
    assert "in 4 alternating rounds over all variants" in (out / "results.md").read_text()


def test_bench_times_in_one_round_when_the_sessions_do_not_fit(runs, capsys, caplog, monkeypatch):
    """Too little RAM to hold every session open: one round, one variant at a time, said in the log and the report."""
    from bench import stage

    monkeypatch.setattr(stage, "physical_memory", lambda: 1 << 20)  # 1 MiB: less than the tiny runs' weights
    caplog.set_level(logging.WARNING, logger="bench.stage")
    out = runs["base"] / "one-round"
    args = ["bench", runs["a"], "--rounds", "4", "--batch-sizes", "1", "--seq-lengths", "16", "--min-time", "0",
            "--warmup", "0", "min_runs=4", "--out", out]
    assert run_cli(args, capsys).code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["rounds"] == 1
    assert [t["runs"] for t in results["timings"]] == [4] * len(results["variants"])  # min_runs in the one round
    assert "timing in 1 round, one variant at a time" in caplog.text
    assert "alternating rounds" not in (out / "results.md").read_text()


def test_bench_does_not_import_torch_for_onnx_variants(runs):
    code = ("import sys; from pathlib import Path; from bench import stage; from compress.config import BenchConfig; "
            f"stage.run(BenchConfig(batch_sizes=[1], seq_lengths=[16], min_time_s=0.0, min_runs=1, warmup=0), "
            f"[Path({str(runs['b'])!r})], Path({str(runs['base'] / 'notorch')!r})); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (["A", "--provider", "cuda"], "provider 'cuda'"),
    (["A", "--provider", "tpu"], "invalid config"),
    (["A", "--seq-lengths", "64,4096"], "longer than"),
    (["A", "--batch-sizes", "1,x"], "comma list of integers"),
    (["A", "B"], "pass --out"),
    (["EMPTY"], "nothing to benchmark"),
    (["A", "--task", "nope"], "unknown task 'nope'"),
    (["A", "wamrup=3"], "unknown key wamrup"),
])
def test_bad_input(args, message, runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    mapping = {"A": str(runs["a"]), "B": str(runs["b"]), "EMPTY": str(tmp_path / "empty")}
    result = run_cli(["bench", *[mapping.get(a, a) for a in args]], capsys)
    assert result.code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
