"""Distillation into a student with a trimmed vocabulary (student.trim_vocab): the teacher reads the same
pieces through the id map, and the student folder is a normal, smaller model."""

import json

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from reference.tiny_models import ENGLISH_TEXT, write_corpus
from tests.cli_runner import run_cli

TEXT = ENGLISH_TEXT[:8]


@pytest.mark.parametrize("family", ["bert", "roberta", "xlmr"])
def test_trimmed_student_reads_what_the_teacher_reads(family, request, tmp_path, capsys):
    """Trimmed to a few English lines, for all three tokenizer families."""
    teacher_dir = request.getfixturevalue(f"tiny_{family}_dir")
    corpus_file = write_corpus(tmp_path / "english.txt", TEXT)
    run = tmp_path / "run"
    result = run_cli(["distill", "--teacher", teacher_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
                      "--hidden", "64", "--heads", "4", "--steps", "0", "student.trim_vocab=true",
                      "student.init_from_teacher_layers=[2,4]"], capsys)
    assert result.code == 0, result.stderr
    kept = json.loads((run / "student" / "trimmed_vocab.json").read_text())["kept_ids"]
    student, teacher = AutoModel.from_pretrained(run / "student"), AutoModel.from_pretrained(teacher_dir)
    s_tok, t_tok = AutoTokenizer.from_pretrained(run / "student"), AutoTokenizer.from_pretrained(teacher_dir)
    assert student.config.vocab_size == len(kept) == len(s_tok) < teacher.config.vocab_size
    stage = json.loads((run / "manifest.json").read_text())["stages"]["distill"]
    assert stage["resolved"]["student_vocab"] == len(kept)

    # Every corpus line: the student's ids map one to one onto the teacher's own segmentation.
    for line in TEXT:
        s_ids, t_ids = s_tok(line)["input_ids"], t_tok(line)["input_ids"]
        assert [kept[i] for i in s_ids] == t_ids, line
    # The copied embedding rows are the teacher's rows at the kept ids, so the initialised student
    # computes exactly what an untrimmed one would.
    np_kept = torch.tensor(kept)
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight[np_kept])
    enc = s_tok(TEXT[:4], padding=True, return_tensors="pt")
    full = AutoModel.from_pretrained(teacher_dir)
    full.encoder.layer = torch.nn.ModuleList([full.encoder.layer[1], full.encoder.layer[3]])
    with torch.no_grad():
        ours = student(**enc).last_hidden_state
        theirs = full(input_ids=np_kept[enc["input_ids"]], attention_mask=enc["attention_mask"],
                      **({"token_type_ids": enc["token_type_ids"]} if "token_type_ids" in enc else {})).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_trimmed_distillation_trains_and_exports(tiny_xlmr_dir, corpus_file, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["distill", "--teacher", tiny_xlmr_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
            "--hidden", "32", "--heads", "4", "--steps", "6", "student.trim_vocab=true", "student.trim_min_count=2",
            "train.log_every=1"]
    assert run_cli(args, capsys).code == 0
    losses = [json.loads(line)["loss"] for line in (run / "distill" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(loss == loss for loss in losses)
    result = run_cli(["export", run, "--int8"], capsys)
    assert result.code == 0, result.stderr
    original = run_cli(["export", run, "--qat", "--qat-reference", "original"], capsys)
    assert original.code == 2 and "trimmed vocabulary" in original.stderr


def test_resume_refuses_a_changed_vocabulary(tiny_bert_dir, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c.txt", TEXT)
    run = tmp_path / "run"
    args = ["distill", "--teacher", tiny_bert_dir, "--corpus", corpus, "--run-dir", run, "--layers", "1", "--hidden", "32",
            "--heads", "4", "student.trim_vocab=true", "train.checkpoint_every=2"]
    assert run_cli(args + ["--steps", "2"], capsys).code == 0
    write_corpus(corpus, ENGLISH_TEXT)  # more text: more pieces (and other data): refused before any vocabulary is built
    result = run_cli(args + ["--steps", "4", "--resume"], capsys)
    assert result.code == 2 and "changed since" in result.stderr and "same data" in result.stderr
