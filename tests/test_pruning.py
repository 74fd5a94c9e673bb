"""student.init=teacher (compress.pruning): students of any smaller shape cut out of the teacher."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from tests.cli_runner import run_cli
from compress.architectures import ARCHITECTURES
from compress.errors import UserError
from compress.pruning import (
    activation_importance, evenly_spaced_layers, init_from_teacher, magnitude_importance, plan_pruning,
)
from compress.student import build_student, student_config
from reference.masked_teacher import masked_teacher

FAMILIES = sorted(ARCHITECTURES)  # bert, camembert, distilbert, electra, mpnet, roberta, xlm-roberta


def _teacher(model_type: str, seed: int = 0, vocab_size: int = 120):
    """A tiny random teacher: 4 layers, hidden 64, 4 heads of 16, FFN 256."""
    base = AutoConfig.for_model(model_type, vocab_size=vocab_size, pad_token_id=0)
    spec = ARCHITECTURES[model_type]
    torch.manual_seed(seed)
    return AutoModel.from_config(student_config(base, spec, layers=4, hidden=64, heads=4)).eval(), spec


def _batches(vocab_size: int = 120, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random ids with padded rows (padding must not count)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for length in (7, 19):
        ids = torch.randint(3, vocab_size, (3, length), generator=g)
        mask = torch.ones_like(ids)
        mask[1, length // 2:] = 0
        ids[mask == 0] = 0
        out.append((ids, mask))
    return out


def _student(teacher, spec, *, layers=2, hidden=32, heads=2, ffn=96):
    return build_student(student_config(teacher.config, spec, layers=layers, hidden=hidden, heads=heads,
                                        intermediate_size=ffn), seed=3)


@pytest.mark.parametrize("criterion", ["activation", "magnitude"])
@pytest.mark.parametrize("model_type", FAMILIES)
def test_the_pruned_student_computes_what_the_masked_teacher_computes(model_type, criterion, tmp_path):
    teacher, spec = _teacher(model_type)
    student = _student(teacher, spec)
    plan = init_from_teacher(student, teacher, spec, teacher_layers=[2, 4], criterion=criterion,
                             batches=_batches() if criterion == "activation" else None)
    assert len(plan.hidden) == 32 and all(len(h) == 2 for h in plan.heads) and all(len(n) == 96 for n in plan.neurons)
    if spec.shared_head_bias:  # one per-head table for every layer: the same heads everywhere
        assert plan.heads[0] == plan.heads[1]
    student.save_pretrained(tmp_path / "student")
    loaded = AutoModel.from_pretrained(tmp_path / "student").eval()  # a plain Hugging Face folder
    reference = masked_teacher(teacher, spec, plan)
    with torch.no_grad():
        for ids, mask in _batches(seed=7):
            ours = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
            theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state[..., plan.hidden]
            real = mask.bool()
            torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=2e-5)


def test_a_student_as_wide_as_the_teacher_copies_its_layers():
    teacher, spec = _teacher("bert")
    student = _student(teacher, spec, hidden=64, heads=4, ffn=256)
    plan = init_from_teacher(student, teacher, spec, teacher_layers=None, criterion="activation", batches=None)
    assert plan.teacher_layers == [2, 4] and plan.calibration is None
    assert torch.equal(student.encoder.layer[0].attention.self.query.weight, teacher.encoder.layer[1].attention.self.query.weight)
    assert torch.equal(student.encoder.layer[1].output.dense.weight, teacher.encoder.layer[3].output.dense.weight)
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)


def test_activation_importance_drops_what_never_fires():
    """A head with zero value projections, an FFN neuron that is never active and a channel every LayerNorm zeroes
    carry no activation: they go first. The weight norms of the same units still rank them."""
    teacher, spec = _teacher("bert")
    with torch.no_grad():
        for block in teacher.encoder.layer:
            block.attention.self.value.weight[16:32] = 0  # head 1
            block.attention.self.value.bias[16:32] = 0
            block.intermediate.dense.weight[5] = 0
            block.intermediate.dense.bias[5] = -10.0  # GELU(-10) ≈ 0
            for norm in (block.attention.output.LayerNorm, block.output.LayerNorm):
                norm.weight[9], norm.bias[9] = 0, 0
        teacher.embeddings.LayerNorm.weight[9], teacher.embeddings.LayerNorm.bias[9] = 0, 0
    importance, calibration = activation_importance(teacher, spec, [1, 3], _batches())
    assert calibration["sequences"] == 6 and calibration["tokens"] == 6 * 13 - (7 - 3) - (19 - 9)
    assert importance.hidden.argmin() == 9 and all(row.argmin() == 1 for row in importance.heads)
    assert all(row.argmin() == 5 for row in importance.neurons)
    student_cfg = student_config(teacher.config, spec, layers=2, hidden=48, heads=3, intermediate_size=128)
    plan = plan_pruning(importance, student_cfg, spec, [2, 4], "activation", calibration)
    assert 9 not in plan.hidden and all(1 not in h for h in plan.heads) and all(5 not in n for n in plan.neurons)
    magnitude = magnitude_importance(teacher, spec, [1, 3])
    assert magnitude.neurons[0, 5] > 0  # its FFN output column still has weight


def test_shapes_that_cannot_be_cut_out_are_one_line_errors():
    teacher, spec = _teacher("bert")
    cases = [(dict(hidden=96, heads=6), "larger"), (dict(hidden=32, heads=4), "whole attention heads"),
             (dict(hidden=32, heads=2, ffn=512), "FFN size is 256")]
    for shape, message in cases:
        with pytest.raises(UserError, match=message) as err:
            init_from_teacher(_student(teacher, spec, **shape), teacher, spec, teacher_layers=None,
                              criterion="magnitude", batches=None)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="out of range 1..4"):
        init_from_teacher(_student(teacher, spec), teacher, spec, teacher_layers=[2, 5], criterion="magnitude",
                          batches=None)


def test_evenly_spaced_layers_end_at_the_last():
    assert evenly_spaced_layers(12, 6) == [2, 4, 6, 8, 10, 12]
    assert evenly_spaced_layers(12, 4) == [3, 6, 9, 12]
    assert evenly_spaced_layers(6, 3) == [2, 4, 6]


def _folder_teacher(model_type: str, tokenizer_dir, tmp_path):
    """A tiny teacher folder of ``model_type`` with the tiny BERT's tokenizer (MPNet, DistilBERT, ...)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    teacher, _ = _teacher(model_type, vocab_size=len(tokenizer))
    folder = tmp_path / f"teacher-{model_type}"
    teacher.config.pad_token_id = tokenizer.pad_token_id
    if model_type == "distilbert":  # as DistilBERT's own tokenizers: no token types (its forward takes none)
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    teacher.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", ["bert", "roberta", "xlmr", "mpnet", "distilbert"])
def test_a_pruned_student_distils_and_exports(family, request, tiny_bert_dir, corpus_file, tmp_path, capsys):
    """The CLI end to end: a narrower student cut out of each family's teacher distils, exports with parity, and
    its provenance and manifest say how it was cut."""
    if family in ("mpnet", "distilbert"):
        teacher = _folder_teacher(family, tiny_bert_dir, tmp_path)
        hidden, heads = 32, 2
    else:
        teacher = request.getfixturevalue(f"tiny_{family}_dir")
        hidden, heads = 32, 2  # the tiny teachers: hidden 64, 4 heads of 16
    run = tmp_path / "run"
    args = ["distill", "--teacher", teacher, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
            "--hidden", str(hidden), "--heads", str(heads), "--batch-size", "4", "--max-length", "32", "--steps", "2",
            "student.init=teacher", "student.calibration_sequences=12"]
    result = run_cli(args, capsys)
    assert result.code == 0, result.stderr
    provenance = json.loads((run / "student" / "provenance.json").read_text())
    init = provenance["init"]
    assert init["criterion"] == "activation" and init["calibration"]["sequences"] >= 12
    assert len(init["hidden"]) == hidden and init["teacher_layers"] == [2, 4]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["distill"]["resolved"]["init"]["kind"] == "teacher"
    assert "cut out of the teacher" in (run / "student" / "README.md").read_text()  # the model card says so
    assert run_cli(["export", run], capsys).code == 0
    parity = json.loads((run / "export" / "parity.json").read_text())["variants"]["fp32"]
    assert parity["max_abs_diff"] <= 1e-4


def test_student_init_random_refuses_teacher_layers(tiny_bert_dir, corpus_file, tmp_path, capsys):
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "r",
                      "student.init=random", "student.init_from_teacher_layers=[1,2]"], capsys)
    assert result.code == 2 and "set student.init=teacher" in result.stderr and result.stderr.count("\n") == 1


def test_a_pruned_student_with_a_trimmed_vocabulary(tiny_xlmr_dir, corpus_file, tmp_path, capsys):
    """Cut out of the teacher, then its vocabulary trimmed to the corpus: it distils with 8 relation heads and
    exports with parity."""
    run = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_xlmr_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
                      "--hidden", "48", "--heads", "3", "--relation-heads", "8", "--batch-size", "4", "--max-length",
                      "32", "--steps", "2", "student.init=teacher", "student.trim_vocab=true",
                      "student.prune_criterion=magnitude", "student.trim_keep_top=300"], capsys)
    assert result.code == 0, result.stderr
    init = json.loads((run / "student" / "provenance.json").read_text())["init"]
    assert init["criterion"] == "magnitude" and init["calibration"] is None and len(init["hidden"]) == 48
    student = AutoModel.from_pretrained(run / "student")
    assert student.config.vocab_size == 300 < AutoConfig.from_pretrained(tiny_xlmr_dir).vocab_size
    assert run_cli(["export", run, "--int8"], capsys).code == 0
