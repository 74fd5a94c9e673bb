"""Folders sentence-transformers loads with no extra arguments: the student (torch) and RUN/deploy/ (its ONNX and
OpenVINO backends), with the teacher's pooling — tested with the real sentence-transformers (and optimum /
optimum-intel for its onnx / openvino backends, where they install next to the project's pins)."""

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

from compress.pooling import mean_pool
from tests.cli_runner import TINY_DISTILL as SMALL
from tests.cli_runner import run_cli

st = pytest.importorskip("sentence_transformers")
TEXTS = ["hello world", "a much longer sentence with several words in it", "short"]


def _st_teacher(tiny_bert_dir, folder):
    """The tiny BERT as a sentence-transformers folder: mean pooling, then normalize (all-MiniLM-L6-v2's modules)."""
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 64, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "2_Normalize").mkdir()
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 100, "do_lower_case": False}))
    return folder


def _load(folder, caplog, **kwargs):
    """SentenceTransformer(folder, ...) with its warnings captured: none may say it guessed the modules."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        model = st.SentenceTransformer(str(folder), device="cpu", **kwargs)
    assert not [r for r in caplog.records if "No sentence-transformers model found" in r.getMessage()]
    return model


def test_the_student_loads_with_mean_pooling_of_a_plain_teacher(tiny_bert_dir, corpus_file, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *SMALL], capsys).code == 0
    model = _load(run / "student", caplog)
    positions = AutoModel.from_pretrained(tiny_bert_dir).config.max_position_embeddings  # BERT: no offset
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"] and model.max_seq_length == positions
    ours = model.encode(TEXTS, convert_to_numpy=True)
    tokenizer, hf = AutoTokenizer.from_pretrained(run / "student"), AutoModel.from_pretrained(run / "student").eval()
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = mean_pool(hf(**enc).last_hidden_state, enc["attention_mask"]).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_the_teachers_pooling_and_normalize_travel(tiny_bert_dir, corpus_file, tmp_path, capsys, caplog):
    teacher = _st_teacher(tiny_bert_dir, tmp_path / "st-teacher")
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", teacher, "--corpus", corpus_file, "--run-dir", run, *SMALL], capsys).code == 0
    model = _load(run / "student", caplog)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"] and model.max_seq_length == 100
    assert json.loads((run / "student" / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 32
    np.testing.assert_allclose(np.linalg.norm(model.encode(TEXTS), axis=1), 1.0, atol=1e-5)


def _forget_the_length(teacher) -> None:
    """The teacher's tokenizer as many Hub tokenizers are saved: no model_max_length (transformers' 1e30 sentinel)."""
    path = teacher / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("model_max_length")
    path.write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(teacher).model_max_length > 1e20


def test_deploy_folder_loads_in_every_backend(tiny_bert_dir, corpus_file, tmp_path, capsys, caplog):
    from export.deploy import quantized_onnx_name
    from export.isa import cpu_features

    _forget_the_length(tiny_bert_dir)
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *SMALL], capsys).code == 0
    pytest.importorskip("openvino")
    assert run_cli(["export", run, "--int8", "--runtime", "all"], capsys).code == 0
    deploy = run / "deploy"
    int8 = quantized_onnx_name(cpu_features())
    assert {"onnx/model.onnx", f"onnx/{int8}", "openvino/openvino_model.xml",
            "openvino/openvino_model_qint8_quantized.xml", "modules.json", "1_Pooling/config.json"} <= {
        str(p.relative_to(deploy)) for p in deploy.rglob("*") if p.is_file()}
    positions = AutoModel.from_pretrained(tiny_bert_dir).config.max_position_embeddings  # BERT: no offset
    for folder in (run / "student", deploy, deploy / "onnx"):  # the real limit, not the teacher's sentinel
        if (folder / "tokenizer_config.json").is_file():
            assert AutoTokenizer.from_pretrained(folder).model_max_length == positions, folder
    facts = json.loads((deploy / "provenance.json").read_text())
    assert facts["files"]["int8"] == f"onnx/{int8}" and facts["source"]["teacher"] == str(tiny_bert_dir)
    reference = _load(deploy, caplog).encode(TEXTS)
    expected = _load(run / "student", caplog).encode(TEXTS)
    np.testing.assert_allclose(reference, expected, atol=1e-6)

    def cosine(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    checks = []  # sentence-transformers' onnx backend needs optimum, its openvino backend optimum-intel (4.57 job)
    if importlib.util.find_spec("optimum") and importlib.util.find_spec("optimum.onnxruntime"):
        checks += [("onnx", {}, 1e-4), ("onnx", {"model_kwargs": {"file_name": f"onnx/{int8}"}}, None)]
    if importlib.util.find_spec("optimum") and importlib.util.find_spec("optimum.intel"):
        # OpenVINO compiles to bf16 by default on CPUs that have it (a near-lossless tier: checked as INT8 is);
        # FP32 asks for f32, as compress export does
        checks += [("openvino", {"model_kwargs": {"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}}}, 1e-4),
                   ("openvino", {}, None),
                   ("openvino", {"model_kwargs": {"file_name": "openvino/openvino_model_qint8_quantized.xml"}}, None)]
    for backend, kwargs, atol in checks:
        out = _load(deploy, caplog, backend=backend, **kwargs).encode(TEXTS)
        if atol:
            np.testing.assert_allclose(out, reference, atol=atol)
        else:  # INT8, or bf16
            assert cosine(out, reference).min() > 0.99, (backend, kwargs)


_LOAD_QUIETLY = """
import sys
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer
for folder in sys.argv[1:]:
    AutoTokenizer.from_pretrained(folder)
    SentenceTransformer(folder, device="cpu").encode(["hello world"])
"""


@pytest.mark.skipif(not transformers.__version__.startswith("5."),
                    reason="transformers 4.57.3+ warns of an incorrect Mistral regex for every folder it saved "
                           "(its _patch_mistral_regex); folders saved by transformers 5, the default stack, are clean")
def test_produced_folders_load_without_a_tokenizer_warning(tiny_roberta_dir, corpus_file, tmp_path, capsys):
    """What a user sees who loads student/ and deploy/ in a program of their own (that never imports compress,
    whose log filter would hide such a warning): no tokenizer warning at all."""
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_roberta_dir, "--corpus", corpus_file, "--run-dir", run, *SMALL],
                   capsys).code == 0
    assert run_cli(["export", run], capsys).code == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-W", "default", "-c", _LOAD_QUIETLY, str(run / "student"),
                           str(run / "deploy")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "tokeniz" not in done.stderr.lower(), done.stderr
