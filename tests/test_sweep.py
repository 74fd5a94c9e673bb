"""compress sweep-layers end to end on a tiny teacher, and the baselines of the reproduction study
(a student initialised from teacher layers with no distillation; hidden-state MSE distillation)."""

import json

import pytest
import torch
from transformers import AutoModel

from compress.errors import UserError
from bench.sweep import candidate_layers
from tests.cli_runner import run_cli
from tests.test_finetune import write_toy_task


def test_candidate_layers():
    assert candidate_layers("auto", 12) == [6, 8, 10, 12]
    assert candidate_layers("auto", 24) == [12, 14, 16, 18, 20, 22, 24]
    assert candidate_layers("auto", 4) == [2, 4]
    assert candidate_layers("3, last,3", 6) == [3, 6]
    for bad in ("0", "7", "x"):
        with pytest.raises(UserError, match="not in 1..6"):
            candidate_layers(bad, 6)


def test_sweep_end_to_end_and_resume(tiny_bert_dir, corpus_file, tmp_path, capsys):
    spec = write_toy_task(tmp_path, sizes=(120, 40, 60))
    out = tmp_path / "sweep"
    args = ["sweep-layers", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", out, "--layers", "2",
            "--hidden", "32", "--heads", "4", "--steps", "4", "--batch-size", "8", "--teacher-layers", "2,4",
            "--task", spec]
    result = run_cli(args, capsys)
    assert result.code == 0, result.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["teacher_layer"] for r in sweep["rows"]] == [2, 4, "teacher"]
    for row in sweep["rows"]:
        assert {(s["task"], s["metric"]) for s in row["scores"]} >= {("toy", "accuracy"), ("toy", "macro_f1")}
    for layer in (2, 4):
        stage = json.loads((out / f"layer-{layer}" / "manifest.json").read_text())["stages"]["distill"]
        assert stage["status"] == "complete" and stage["resolved"]["teacher_layer"] == layer
    assert "| 2 |" in result.stdout and "Best layer per task" in result.stdout
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second call reuses the finished candidates (same weights, same cached scores).
    before = (out / "layer-2" / "student" / "model.safetensors").stat().st_mtime_ns
    assert run_cli(args, capsys).code == 0
    assert (out / "layer-2" / "student" / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((out / "sweep.json").read_text())["rows"] == sweep["rows"]


def test_sweep_needs_a_task(tiny_bert_dir, corpus_file, tmp_path, capsys):
    result = run_cli(["sweep-layers", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "s"], capsys)
    assert result.code == 2 and "no task given" in result.stderr


def test_zero_steps_saves_the_initialised_student(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run = tmp_path / "init"
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
                      "--hidden", "64", "--heads", "4", "--steps", "0", "student.init_from_teacher_layers=[2,4]"], capsys)
    assert result.code == 0, result.stderr
    student, teacher = AutoModel.from_pretrained(run / "student"), AutoModel.from_pretrained(tiny_bert_dir)
    for s_layer, t_layer in ((0, 1), (1, 3)):
        for (name, p), (_, q) in zip(student.encoder.layer[s_layer].named_parameters(),
                                     teacher.encoder.layer[t_layer].named_parameters()):
            assert torch.equal(p, q), name


def test_hidden_mse_baseline(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run = tmp_path / "mse"
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
                      "--hidden", "64", "--heads", "4", "--steps", "30", "--lr", "1e-3", "loss.objective=hidden_mse",
                      "train.log_every=5"], capsys)
    assert result.code == 0, result.stderr
    losses = [json.loads(line)["loss"] for line in (run / "distill" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0]
    bad = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "bad",
                   "--hidden", "32", "loss.objective=hidden_mse"], capsys)
    assert bad.code == 2 and "must equal the teacher's 64" in bad.stderr
