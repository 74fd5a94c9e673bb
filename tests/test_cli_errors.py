"""Every bad input to ``compress distill`` ends in one line on stderr, exit code 2 and no complete-looking output."""

import pytest
import torch
from transformers import GPT2Config, GPT2Model

from tests.cli_runner import run_cli


@pytest.fixture
def gpt2_dir(tmp_path):
    path = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64)).save_pretrained(path)
    return path


CASES = {
    "missing teacher": (lambda d, t, c: ["--teacher", d / "nowhere", "--corpus", c], "not a model folder|cannot load teacher"),
    "non-model folder": (lambda d, t, c: ["--teacher", d, "--corpus", c], "not a model folder"),
    "hidden vs heads": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--hidden", "30", "--heads", "4"], "not divisible"),
    "relation heads": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--relation-heads", "7"], "relation heads do not divide"),
    "teacher layer": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--teacher-layer", "99"], "out of range"),
    "corpus missing": (lambda d, t, c: ["--teacher", t, "--corpus", d / "none.txt"], "does not exist"),
    "corpus empty": (lambda d, t, c: ["--teacher", t, "--corpus", _write(d / "e.txt", "\n \n")], "no usable line"),
    "corpus unusable jsonl": (lambda d, t, c: ["--teacher", t, "--corpus", _write(d / "e.jsonl", '{"x": 1}\n')], "no usable line"),
    "unknown key": (lambda d, t, c: ["--teacher", t, "--corpus", c, "train.stpes=3"], "unknown key train.stpes"),
    "unknown key in file": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--config", _write(d / "c.yaml", "loss:\n  tempreature: 2\n")], r"c\.yaml.*unknown key loss\.tempreature"),
    "no teacher": (lambda d, t, c: ["--corpus", c], "no teacher given"),
    "no corpus": (lambda d, t, c: ["--teacher", t], "no corpus given"),
    "bad device": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--device", "tpu"], "train.device"),
    "batch vs accumulation": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--batch-size", "5", "train.grad_accum=2"], "not divisible by grad_accum"),
    "resume nothing": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--resume"], "nothing to resume"),
    "longer than the teacher": (lambda d, t, c: ["--teacher", t, "--corpus", c, "--max-length", "512"],
                                "longer than the teacher's 128 positions"),
    "corpus weight": (lambda d, t, c: ["--teacher", t, "--corpus", f"{c}:-1"], "corpus weight -1 .* must be a number above 0"),
}


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_exit_2(case, tiny_bert_dir, corpus_file, tmp_path, capsys):
    make_args, pattern = CASES[case]
    run_dir = tmp_path / "run"
    result = run_cli(["distill", "--run-dir", run_dir, "--steps", "2", *make_args(tmp_path, tiny_bert_dir, corpus_file)], capsys)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]
    assert not (run_dir / "student").exists()
    assert not (run_dir / "manifest.json").exists()


def test_unsupported_architecture(gpt2_dir, corpus_file, tmp_path, capsys):
    result = run_cli(["distill", "--teacher", gpt2_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "run"], capsys)
    assert result.code == 2
    assert "unsupported architecture 'gpt2'" in result.stderr and "xlm-roberta" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_without_cuda(tiny_bert_dir, corpus_file, tmp_path, capsys):
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "r",
                      "--device", "cuda"], capsys)
    assert result.code == 2 and "no CUDA device" in result.stderr


def test_corrupt_teacher_weights(tiny_bert_dir, corpus_file, tmp_path, capsys):
    (tiny_bert_dir / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "r"], capsys)
    assert result.code == 2, result.stderr
    assert "cannot load teacher" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_existing_run_is_not_overwritten(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, "--layers", "1",
            "--hidden", "32", "--heads", "2", "--steps", "2", "--batch-size", "2"]
    assert run_cli(args, capsys).code == 0
    again = run_cli(args, capsys)
    assert again.code == 2 and "already holds a distillation" in again.stderr
