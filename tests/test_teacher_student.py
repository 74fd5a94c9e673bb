"""Teacher-layer and relation-head rules, and student construction."""

import pytest
import torch
from transformers import AutoModel

from compress.architectures import arch_spec
from compress.errors import UserError
from compress.student import build_student, student_config
from compress.teacher import resolve_relation_heads, resolve_teacher_layer


@pytest.mark.parametrize("family, layers, value, expected", [
    ("bert", 12, "auto", 12), ("bert", 6, "auto", 6), ("bert", 24, "auto", 21),
    ("roberta", 24, "auto", 19), ("xlm-roberta", 24, "auto", 19), ("bert", 24, "last", 24), ("bert", 24, 7, 7),
])
def test_teacher_layer_rule(family, layers, value, expected):
    assert resolve_teacher_layer(value, layers, arch_spec(family)) == expected


@pytest.mark.parametrize("value", [0, 13])
def test_teacher_layer_out_of_range(value):
    with pytest.raises(UserError, match="out of range"):
        resolve_teacher_layer(value, 12, arch_spec("bert"))


@pytest.mark.parametrize("teacher, student, expected", [
    (768, 384, 48), (1024, 384, 64), (384, 384, 48), (384, 128, 64), (768, 256, 64), (768, 192, 48), (1024, 320, 64),
])
def test_default_relation_heads(teacher, student, expected):
    r = resolve_relation_heads("auto", teacher, student)
    assert r == expected and teacher % r == 0 and student % r == 0


def test_explicit_relation_heads_that_do_not_divide_name_alternatives():
    with pytest.raises(UserError) as err:
        resolve_relation_heads(5, 768, 384)
    assert "4" in str(err.value) and "6" in str(err.value)
    assert resolve_relation_heads(12, 768, 384) == 12


def test_student_shape_and_family(tiny_teacher_dir):
    teacher = AutoModel.from_pretrained(tiny_teacher_dir)
    spec = arch_spec(teacher.config.model_type)
    cfg = student_config(teacher.config, spec, layers=2, hidden=32, heads=2)
    student = build_student(cfg, seed=0)
    assert type(student) is type(teacher)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 32, 2, 128)
    assert cfg.vocab_size == teacher.config.vocab_size
    again = build_student(cfg, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), again.state_dict().values()))


def test_hidden_not_divisible_by_heads(tiny_bert_dir):
    teacher = AutoModel.from_pretrained(tiny_bert_dir)
    with pytest.raises(UserError, match="not divisible"):
        student_config(teacher.config, arch_spec("bert"), layers=2, hidden=30, heads=4)
