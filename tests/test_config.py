"""Typed config: every preset validates; unknown keys fail in one message; precedence of sources."""

import re
from pathlib import Path

import pytest

from compress.config import DistillConfig, ExportConfig, build_config, load_yaml
from compress.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("distill/*.yaml")), ids=lambda p: p.name)
def test_every_distill_preset_validates(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "a preset opens with a comment saying what it produces and how to run it"
    assert re.search(r"compress(\.cli)? distill", text), "the header gives the command that runs it"
    build_config(DistillConfig, base=load_yaml(path), source=str(path))


def test_unknown_keys_are_all_named_with_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 10\n  lr: fast\nstudnet:\n  layers: 2\n")
    with pytest.raises(UserError) as err:
        build_config(DistillConfig, base=load_yaml(bad), source=str(bad))
    message = str(err.value)
    assert str(bad) in message and "\n" not in message
    assert "train.stpes" in message and "studnet" in message and "train.lr" in message


def test_precedence_defaults_file_overrides_flags():
    base = {"train": {"steps": 10, "lr": 1e-3}, "student": {"layers": 2}}
    cfg = build_config(DistillConfig, base=base, overrides=["train.steps=20", "loss.weights.vv=2"],
                       flags={"train.steps": 30, "student.layers": None})
    assert cfg.train.steps == 30  # the named flag wins over key=value
    assert cfg.train.lr == 1e-3  # from the file
    assert cfg.student.layers == 2  # a flag left unset does not override
    assert cfg.loss.weights["vv"] == 2.0
    assert cfg.train.batch_size == DistillConfig().train.batch_size  # default


def test_one_nested_key_keeps_the_fields_own_defaults():
    """``--qat-steps 30`` changes one key of ExportConfig's QAT defaults (lr 2e-5, no weight decay); it must not
    fall back to TrainConfig's class defaults (distillation's lr 6e-4), as it once did."""
    defaults = ExportConfig().qat_train
    cfg = build_config(ExportConfig, overrides=["qat_train.log_every=1"], flags={"qat_train.steps": 30})
    assert cfg.qat_train.steps == 30 and cfg.qat_train.log_every == 1
    assert cfg.qat_train.lr == defaults.lr == 2e-5 and cfg.qat_train.weight_decay == defaults.weight_decay == 0.0
    with pytest.raises(UserError, match="qat_train.stpes"):
        build_config(ExportConfig, overrides=["qat_train.stpes=3"])


def test_bad_override_syntax():
    with pytest.raises(UserError, match="key=value"):
        build_config(DistillConfig, overrides=["train.steps"])


def test_malformed_and_missing_yaml(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(broken)
    with pytest.raises(UserError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")


def test_quantize_embeddings_is_true_false_or_auto():
    assert build_config(ExportConfig).quantize_embeddings == "auto"
    assert build_config(ExportConfig, overrides=["quantize_embeddings=true"]).quantize_embeddings is True
    with pytest.raises(UserError, match="quantize_embeddings: .*must be true, false or auto, not 'maybe'"):
        build_config(ExportConfig, overrides=["quantize_embeddings=maybe"])
