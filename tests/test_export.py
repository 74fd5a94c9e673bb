"""``compress export`` on tiny distilled BERT, RoBERTa and XLM-R students (real optimum and ONNX Runtime)."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from transformers import AutoTokenizer

from compress.architectures import ARCHITECTURES
from export.fusion import cpu_session_options
from tests.cli_runner import TINY_DISTILL as SMALL
from tests.cli_runner import run_cli


def _parity(run_dir):
    return json.loads((run_dir / "export" / "parity.json").read_text())["variants"]


def test_fp32_and_dynamic_int8(distilled, capsys):
    result = run_cli(["export", distilled, "--int8"], capsys)
    assert result.code == 0, result.stderr
    variants = _parity(distilled)
    assert variants["fp32"]["max_abs_diff"] < 1e-4 and variants["fp32"]["samples"] > 10
    int8 = variants["int8"]
    assert int8["method"] == "dynamic" and int8["mean_cosine"] > 0.99
    assert 0.0 <= int8["nn_clear_share"] <= 1.0 and variants["fp32"]["nn_agreement"] == 1.0
    if int8["nn_clear_share"] > 0:  # agreement where the reference's neighbour is clear (export.parity)
        assert 0.0 <= int8["nn_agreement_clear"] <= 1.0 and variants["fp32"]["nn_agreement_clear"] == 1.0
    else:
        assert "nn_agreement_clear" not in int8
    # Fused for the CPU (export.fusion): per layer one QAttention (Q, K, V in INT8) and 3 integer matmuls
    # (attention output, FFN in and out); no float Linear left, and no SkipLayerNormalization.
    assert int8["fused"] and int8["fused_ops"]["Attention"] == 2 and int8["fused_max_abs_diff"] < 1e-4
    ops = int8["op_counts"]
    assert ops["QAttention"] == 2 and ops["MatMulInteger"] == 6 and ops["DynamicQuantizeLinear"] >= 1
    assert "MatMul" not in ops and "SkipLayerNormalization" not in ops
    assert not list((distilled / "export").glob(".*")), "temporary files left in export/"
    assert int8["size_bytes"] < variants["fp32"]["size_bytes"]
    stage = json.loads((distilled / "manifest.json").read_text())["stages"]["export"]
    assert stage["status"] == "complete" and set(stage["outputs"]) == {"fp32", "int8", "parity", "deploy"}
    # Each folder says what it is when copied out of the run: its variant, its parity, and the student's facts.
    student = json.loads((distilled / "student" / "provenance.json").read_text())
    for name in ("fp32", "int8"):
        facts = json.loads((distilled / "export" / name / "provenance.json").read_text())
        assert facts["variant"] == name and facts["parity"]["mean_cosine"] == variants[name]["mean_cosine"]
        assert facts["source"] == student and facts["export_config"]["int8"] is True
        assert "onnxruntime" in facts["versions"] and "transformers" in facts["versions"]


def test_optimum_ortmodel_loads_the_exports(distilled, capsys):
    """optimum's ORTModel loads each folder and agrees with a bare ONNX Runtime session (where optimum
    installs: optimum-onnx 0.1 needs transformers < 4.58, so the transformers 5 job skips this)."""
    ortmodel = pytest.importorskip("optimum.onnxruntime")
    assert run_cli(["export", distilled, "--int8"], capsys).code == 0
    for name in ("fp32", "int8"):
        folder = distilled / "export" / name
        tokenizer = AutoTokenizer.from_pretrained(folder)
        enc = tokenizer(["hello world", "a longer sentence here"], padding=True, return_tensors="np")
        # with ORT's defaults, and with the CPU session options the README tells users to pass; each against a bare
        # session with the same options (another set fuses other ops, and INT8's per-batch activation scales can
        # turn those last-bit differences into rounding flips)
        for options in (None, cpu_session_options()):
            session = ort.InferenceSession(str(folder / "model.onnx"), options)
            names = {i.name for i in session.get_inputs()}
            ref = session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
            model = ortmodel.ORTModelForFeatureExtraction.from_pretrained(folder, session_options=options)
            out = model(**{k: v for k, v in enc.items()}).last_hidden_state
            np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_unfused_dynamic_int8(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """``fuse=false``: the portable graph, 2 layers × 6 Linear projections as integer matmuls."""
    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    result = run_cli(["export", run_dir, "--int8", "fuse=false"], capsys)
    assert result.code == 0, result.stderr
    int8 = _parity(run_dir)["int8"]
    assert not int8["fused"] and int8["op_counts"]["MatMulInteger"] == 12 and "QAttention" not in int8["op_counts"]


def test_static_int8_is_a_qdq_graph(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    result = run_cli(["export", run_dir, "--int8", "--int8-method", "static", "--calib-corpus", corpus_file,
                      "calib_samples=16"], capsys)
    assert result.code == 0, result.stderr
    int8 = _parity(run_dir)["int8"]
    assert int8["method"] == "static" and int8["mean_cosine"] > 0.95
    assert int8["op_counts"]["QuantizeLinear"] >= 12 and int8["op_counts"]["DequantizeLinear"] >= 24


def test_refusals_leave_nothing_that_looks_complete(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0

    strict = run_cli(["export", run_dir, "fp32_tolerance=1e-12"], capsys)
    assert strict.code == 2 and "fp32 (ONNX Runtime FP32) differs from PyTorch by" in strict.stderr
    assert not (run_dir / "export" / "fp32").exists()

    refused = run_cli(["export", run_dir, "--int8", "min_int8_cosine=1.0"], capsys)
    assert refused.code == 2 and "mean cosine" in refused.stderr and "force" in refused.stderr
    assert not (run_dir / "export" / "int8").exists() and not (run_dir / "export" / ".int8.tmp").exists()

    forced = run_cli(["export", run_dir, "--int8", "min_int8_cosine=1.0", "--force"], capsys)
    assert forced.code == 0 and (run_dir / "export" / "int8" / "model.onnx").exists()


@pytest.mark.parametrize("setup, args, message", [
    ("none", [], "has no finished distillation"),
    ("distilled", ["--opset", "9"], "opset"),
    ("distilled", ["--int8", "--int8-method", "static", "--calib-corpus", "EMPTY"], "no usable line"),
    ("corrupt", [], "is damaged (its weights do not load): rebuild it with `compress distill --run-dir"),
    ("distilled", ["--model", "sentiment"], "no fine-tuned model 'sentiment'"),
    ("teacher gone", ["--model", "teacher"], "is not there any more"),
    ("distilled", ["--qat", "--resume"], "no QAT checkpoint"),
    ("distilled", ["--qat-runtime", "openvino"], "not among the exported runtimes"),
])
def test_bad_input(setup, args, message, tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    if setup != "none":  # distilled, corrupt, teacher gone
        assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    if setup == "corrupt":
        (run_dir / "student" / "model.safetensors").write_bytes(b"not a tensor file")
    if setup == "teacher gone":
        shutil.rmtree(tiny_bert_dir)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = run_cli(["export", run_dir, *[str(empty) if a == "EMPTY" else a for a in args]], capsys)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (run_dir / "export" / "parity.json").exists()


def test_fine_tuned_classifier_export_and_stale_variants(tiny_bert_dir, corpus_file, tmp_path, capsys):
    from tests.test_finetune import write_toy_task

    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    spec = write_toy_task(tmp_path, epochs=1, sizes=(32, 16, 16))
    assert run_cli(["finetune", run_dir, "--task", spec, "--name", "toy"], capsys).code == 0

    result = run_cli(["export", run_dir, "--model", "toy", "--int8"], capsys)
    assert result.code == 0, result.stderr
    assert "same prediction" in result.stdout and "export/toy/int8/model.onnx" in result.stdout
    variants = json.loads((run_dir / "export" / "toy" / "parity.json").read_text())["variants"]
    assert variants["fp32"]["prediction_agreement"] == 1.0 and variants["int8"]["prediction_agreement"] >= 0.8
    session = ort.InferenceSession(str(run_dir / "export" / "toy" / "int8" / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["logits"]
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert stages["export/toy"]["status"] == "complete" and "export" not in stages  # the student's export untouched

    qat = run_cli(["export", run_dir, "--model", "toy", "--qat"], capsys)
    assert qat.code == 2 and "--qat retrains the task-agnostic student" in qat.stderr

    # Re-exporting the student without --int8 removes an INT8 variant made from an older export.
    assert run_cli(["export", run_dir, "--int8"], capsys).code == 0
    assert run_cli(["export", run_dir], capsys).code == 0
    assert not (run_dir / "export" / "int8").exists() and set(_parity(run_dir)) == {"fp32"}
    assert (run_dir / "export" / "toy" / "int8").exists()  # another model's variants are left alone


def test_qat_resume(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    nothing = run_cli(["export", run_dir, "--qat", "--resume"], capsys)
    assert nothing.code == 2 and "nothing to resume" in nothing.stderr
    qat = ["qat_train.batch_size=4", "qat_train.log_every=1", "qat_train.checkpoint_every=2"]
    assert run_cli(["export", run_dir, "--qat", "--qat-steps", "2", *qat], capsys).code == 0
    metrics = run_dir / "export" / "qat" / "metrics.jsonl"
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]
    # Continue the same retraining to 4 steps: steps 1-2 are not redone.
    assert run_cli(["export", run_dir, "--qat", "--qat-steps", "4", "--resume", *qat], capsys).code == 0
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4]
    # A resume of a finished retraining trains nothing and still reports its final loss.
    assert run_cli(["export", run_dir, "--qat", "--qat-steps", "4", "--resume", *qat], capsys).code == 0
    last = json.loads(metrics.read_text().splitlines()[-1])
    assert last["step"] == 4 and _parity(run_dir)["int8-qat"]["qat_final_loss"] == pytest.approx(last["loss"])


def test_bert_weights_with_a_tokenizer_without_token_type_ids(tmp_path, corpus_file, capsys):
    """multilingual-e5's shape: a BERT graph (token_type_ids input) with XLM-R's tokenizer (returns none)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from reference.tiny_models import make_tiny_xlmr

    xlmr = make_tiny_xlmr(tmp_path / "xlmr")
    tokenizer = AutoTokenizer.from_pretrained(xlmr)
    assert "token_type_ids" not in tokenizer("hello")
    teacher = tmp_path / "e5-like"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, type_vocab_size=2, pad_token_id=tokenizer.pad_token_id)).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    run_dir = tmp_path / "run"
    assert run_cli(["distill", "--teacher", teacher, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL], capsys).code == 0
    result = run_cli(["export", run_dir, "--int8"], capsys)
    assert result.code == 0, result.stderr
    assert _parity(run_dir)["fp32"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize(("setting", "vocab", "expected"), [
    ("auto", 5000, True), ("auto", 100, False), (True, 100, True), (False, 5000, False)])
def test_quantize_embeddings_auto_follows_the_tables_share(setting, vocab, expected):
    # 1 layer of width 32: a 5,000-word table is ~90% of the parameters (a multilingual student's shape),
    # a 100-word one ~25% (an English model's).
    from transformers import BertConfig, BertModel

    from export.stage import resolve_quantize_embeddings

    model = BertModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False)
    assert resolve_quantize_embeddings(setting, model) is expected


@pytest.mark.parametrize("tiny_teacher_dir", ["bert"], indirect=True)
def test_a_failed_export_keeps_the_good_one(distilled, capsys):
    assert run_cli(["export", distilled, "--int8"], capsys).code == 0
    export = distilled / "export"
    before = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    result = run_cli(["export", distilled, "--int8", "fp32_tolerance=1e-12"], capsys)
    assert result.code == 2 and "previous export, if any, is kept" in result.stderr
    after = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    assert after == before  # every file of the good export, byte for byte
    assert not [p for p in distilled.iterdir() if p.name.endswith(".new")]
    stage = json.loads((distilled / "manifest.json").read_text())["stages"]["export"]
    assert stage["status"] == "complete" and "fp32_tolerance" in json.dumps(stage["last_failure"]["config"])
    assert stage["config"]["fp32_tolerance"] == 1e-4  # the record still describes what is on disk
    # A successful export afterwards clears the failure.
    assert run_cli(["export", distilled], capsys).code == 0
    stage = json.loads((distilled / "manifest.json").read_text())["stages"]["export"]
    assert stage["last_failure"] is None and not (export / "int8").exists()


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_every_supported_family_exports_within_tolerance(model_type, tiny_bert_dir, tmp_path):
    """The FP32 exporter (torch.onnx.export, no optimum) on a tiny random model of each family in
    compress/architectures.py: ONNX Runtime matches PyTorch on padded batches of other shapes than the traced one."""
    import torch
    from transformers import AutoConfig, AutoModel

    from compress.student import student_config
    from export.onnx_export import export_fp32

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    base = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    config = student_config(base, ARCHITECTURES[model_type], layers=2, hidden=32, heads=2)
    torch.manual_seed(0)
    folder = tmp_path / model_type
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    onnx_dir = export_fp32(folder, tmp_path / "onnx", task="feature-extraction", opset=18)
    assert {"config.json", "model.onnx", "tokenizer.json"} <= {p.name for p in onnx_dir.iterdir()}
    model = AutoModel.from_pretrained(folder).eval()
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"))
    names = {i.name for i in session.get_inputs()}
    for texts in (["hello world"], ["a much longer sentence with words", "short", "the third one of three here"]):
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            ref = model(**{k: v for k, v in enc.items() if k in names}).last_hidden_state.numpy()
        out = session.run(None, {k: v.numpy() for k, v in enc.items() if k in names})[0]
        keep = enc["attention_mask"].numpy().astype(bool)
        assert np.abs(out - ref)[keep].max() < 1e-4
