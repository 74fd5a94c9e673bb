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


def test_the_timing_vocabulary_gives_the_timing_text_the_same_ids(tiny_teacher_dir_shared, corpus_file, tmp_path):
    # WordPiece (bert), byte-level BPE (roberta) and Unigram (xlmr); whole and after --trim-vocab's cut
    from bench.plan import candidate_vocabulary, plan_lines, timing_vocabulary
    from compress.config import PlanConfig
    from compress.teacher import load_teacher_config, load_tokenizer

    config, _ = load_teacher_config(str(tiny_teacher_dir_shared))
    teacher = load_tokenizer(str(tiny_teacher_dir_shared))
    for trim in (False, True):
        cfg = PlanConfig(teacher=str(tiny_teacher_dir_shared), budget_ms=1, corpus=[str(corpus_file)], trim_vocab=trim)
        tokenizer, kept = candidate_vocabulary(cfg, config, teacher, tmp_path / f"candidates-{trim}")
        lines = plan_lines(cfg, tokenizer)
        small, ids = timing_vocabulary(tokenizer, config, kept, lines, tmp_path / f"timing-{trim}")
        assert ids == sorted(set(ids)) and len(ids) <= len(tokenizer)
        whole = tokenizer(lines, truncation=True, max_length=64)["input_ids"]
        cut = small(lines, truncation=True, max_length=64)["input_ids"]
        assert [[ids[i] for i in row] for row in cut] == whole


@pytest.mark.parametrize("variant", ["int8", "fp32", "openvino-int8", "openvino-fp32"])
def test_a_candidate_exported_with_the_timing_rows_reports_the_whole_vocabularys_size(variant, tiny_xlmr_dir_shared,
                                                                                       corpus_file, tmp_path):
    # the plan exports only the rows its timing text uses; its size and parameters are those of the whole export
    from bench.plan import Shape, embedding_row_bytes, export_candidate, plan_lines, timing_vocabulary
    from compress.config import PlanConfig
    from compress.teacher import load_teacher_config, load_tokenizer

    config, spec = load_teacher_config(str(tiny_xlmr_dir_shared))
    tokenizer = load_tokenizer(str(tiny_xlmr_dir_shared))
    few_words = tmp_path / "few-words.txt"  # text that uses a fraction of the vocabulary, as real text uses e5's
    few_words.write_text("\n".join(" ".join(["hello world", "the quick fox", "jumps over"][i % 3:]) for i in range(64)))
    lines = plan_lines(PlanConfig(teacher=str(tiny_xlmr_dir_shared), budget_ms=1, corpus=[str(few_words)]), tokenizer)
    small, ids = timing_vocabulary(tokenizer, config, None, lines, tmp_path / "timing")
    shape = Shape(1, 16, 1, 32)  # the table is ~90% of the parameters: INT8 variants store it in INT8
    timed, size, params = export_candidate(shape, config, spec, small, lines, variant, tmp_path / "plan", None, ids)
    _, whole_size, whole_params = export_candidate(shape, config, spec, tokenizer, lines, variant, tmp_path / "whole")
    assert params == whole_params and config.vocab_size > 2 * len(ids)
    assert abs(size - whole_size) <= 1024, (size, whole_size)  # an IR's XML spells larger offsets with more digits
    row_bytes = {"int8": 16, "fp32": 64, "openvino-int8": 16 + 4, "openvino-fp32": 64}[variant]  # INT8: NNCF's row scales
    assert embedding_row_bytes(timed.path / timed.spec.file, len(ids)) == row_bytes


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


def test_bf16_on_a_cpu_without_it_is_one_line(tiny_bert_dir, cache, capsys, monkeypatch):
    # OpenVINO's bf16 variant is made only where the CPU computes in bf16; this CPU is made to say it does not
    import export.openvino_export

    monkeypatch.setattr(export.openvino_export, "cpu_has_bf16", lambda: False)
    result = run_cli(["plan", "--teacher", tiny_bert_dir, *GRID, "--budget-ms", "10", "--runtime", "openvino",
                      "--precision", "bf16"], capsys)
    assert result.code == 2 and "no native bf16" in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
