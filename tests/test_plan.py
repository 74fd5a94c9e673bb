"""compress plan: candidate shapes exported and timed on this machine, against a latency budget."""

import json

import pytest
from transformers import AutoConfig

from compress.vocab_trim import trim_model_folder
from tests.cli_runner import run_cli

GRID = ["--layers", "1,2", "--hidden", "32,64", "--seq-length", "32"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RELATION_COMPRESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "plan" / "timings.json"


def test_plan_times_every_candidate_once_and_prints_the_frontier(tiny_bert_dir, corpus_file, cache, tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    out = tmp_path / "plan.json"
    result = run_cli(["plan", "--teacher", tiny_bert_dir, "--budget-ms", "1000", *GRID, "--json", out], capsys)
    assert result.code == 0, result.stderr
    plan = json.loads(out.read_text())
    assert {(c["layers"], c["hidden"]) for c in plan["candidates"]} == {(1, 32), (1, 64), (2, 32), (2, 64)}
    assert plan["variant"] == "int8" and all(c["p50_ms"] > 0 and c["end_to_end_p50_ms"] >= c["p50_ms"] * 0.5
                                             for c in plan["candidates"])
    frontier = plan["frontier"]
    assert frontier[0]["layers"] == 2 and frontier[0]["hidden"] == 64  # the largest first: all fit 1 s
    for row in frontier:  # no candidate within the budget is larger and no slower
        body = row["parameters"] - row["embedding_parameters"]
        assert not any(c["parameters"] - c["embedding_parameters"] > body and c["end_to_end_p50_ms"] <= row["end_to_end_p50_ms"]
                       for c in plan["candidates"])
    assert "--layers 2 --hidden 64 --heads 4" in result.stdout and len(json.loads(cache.read_text())) == 4

    caplog.clear()  # a second plan, another budget: every timing from the cache
    again = run_cli(["plan", "--teacher", tiny_bert_dir, "--budget-ms", "500", *GRID, "--json", out], capsys)
    assert again.code == 0 and sum("cached from" in r.getMessage() for r in caplog.records) == 4
    assert json.loads(out.read_text())["candidates"] == plan["candidates"]

    # the printed command line distils as it stands
    command = next(line for line in result.stdout.splitlines() if line.startswith("compress distill"))
    args = command.split()[2:]
    args[args.index("CORPUS")] = str(corpus_file)
    args[args.index("--run-dir") + 1] = str(tmp_path / "run")
    assert run_cli(["distill", *args, "--steps", "1", "--batch-size", "4", "--max-length", "32"], capsys).code == 0


def test_a_trimmed_plan_times_the_vocabulary_distill_would_keep(tiny_bert_dir, corpus_file, cache, tmp_path, capsys):
    out = tmp_path / "plan.json"
    result = run_cli(["plan", "--teacher", tiny_bert_dir, "--budget-ms", "1000", "--layers", "1", "--hidden", "32",
                      "--seq-length", "32", "--corpus", corpus_file, "--trim-vocab", "--json", out], capsys)
    assert result.code == 0, result.stderr
    plan = json.loads(out.read_text())
    trimmed = trim_model_folder(tiny_bert_dir, [corpus_file], tmp_path / "trimmed")  # compress trim-vocab's choice
    assert plan["vocab_size"] == trimmed.vocab_after < trimmed.vocab_before
    (row,) = plan["candidates"]
    assert row["embedding_parameters"] == trimmed.vocab_after * 32
    assert f"trimmed to the corpus's {trimmed.vocab_after:,} pieces" in result.stdout

    # an untrimmed plan of the same shape is another cache entry, with the whole vocabulary
    whole = run_cli(["plan", "--teacher", tiny_bert_dir, "--budget-ms", "1000", "--layers", "1", "--hidden", "32",
                     "--seq-length", "32", "--json", out], capsys)
    assert whole.code == 0 and json.loads(out.read_text())["candidates"][0]["embedding_parameters"] == trimmed.vocab_before * 32
    assert len(json.loads(cache.read_text())) == 2

    # the printed command distils a student with that very vocabulary
    command = next(line for line in result.stdout.splitlines() if line.startswith("compress distill"))
    args = command.split()[2:]
    assert "student.trim_vocab=true" in args
    args[args.index("CORPUS")] = str(corpus_file)
    args[args.index("--run-dir") + 1] = str(tmp_path / "run")
    assert run_cli(["distill", *args, "--steps", "1", "--batch-size", "4", "--max-length", "32"], capsys).code == 0
    assert AutoConfig.from_pretrained(tmp_path / "run" / "student").vocab_size == plan["vocab_size"]


@pytest.mark.parametrize("args, message", [
    (["--budget-ms", "10", "--trim-vocab"], "pass --corpus"),
    (["--budget-ms", "0.0001"], "no candidate meets"),
    (["--budget-ms", "10", "--hidden", "40"], "cannot be cut out of this teacher"),
    (["--budget-ms", "10", "--layers", "9"], "cannot be cut out of this teacher"),
    (["--budget-ms", "10", "--runtime", "tensorflow"], "runtime"),
    (["--budget-ms", "10", "--precision", "bf16"], "onnxruntime has no bf16 variant"),
])
def test_bad_plans_are_one_line(args, message, tiny_bert_dir, cache, capsys):
    grid = GRID if "--hidden" not in args and "--layers" not in args else ["--seq-length", "32"]
    result = run_cli(["plan", "--teacher", tiny_bert_dir, *grid, *args], capsys)
    assert result.code == 2 and message in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
