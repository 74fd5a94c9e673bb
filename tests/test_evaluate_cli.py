"""compress evaluate: a run's student, a model folder and an exported variant's folder (ONNX or OpenVINO) score
alike."""

import json

import pytest

from tests.cli_runner import TINY_DISTILL, run_cli
from tests.test_finetune import write_toy_task


def test_evaluate_run_model_and_onnx(tiny_bert_dir, corpus_file, tmp_path, capsys):
    spec = write_toy_task(tmp_path, sizes=(80, 20, 40))
    (tmp_path / "fid.yaml").write_text("kind: fidelity\ndata: {test: test.jsonl}\n")
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "2",
                    "--hidden", "32", "--heads", "4", "--steps", "3"], capsys).code == 0
    result = run_cli(["evaluate", run, "--task", spec, "--task", tmp_path / "fid.yaml", "--json", tmp_path / "s.json"], capsys)
    assert result.code == 0, result.stderr
    assert "toy accuracy" in result.stdout and "fid similarity_correlation" in result.stdout
    scores = json.loads((tmp_path / "s.json").read_text())
    cached = json.loads((run / "eval.json").read_text())
    assert cached["scores"] == scores and cached["reference"] == str(tiny_bert_dir)

    assert run_cli(["export", run], capsys).code == 0
    onnx = run_cli(["evaluate", run / "export" / "fp32", "--task", spec, "--task", tmp_path / "fid.yaml",
                    "--reference", run / "student", "--json", tmp_path / "o.json"], capsys)
    assert onnx.code == 0, onnx.stderr
    onnx_scores = {s["metric"]: s["value"] for s in json.loads((tmp_path / "o.json").read_text())}
    assert onnx_scores["similarity_correlation"] == pytest.approx(1.0, abs=1e-5)  # the export of the same model
    torch_scores = {s["metric"]: s["value"] for s in scores}
    assert onnx_scores["accuracy"] == pytest.approx(torch_scores["accuracy"], abs=0.05)

    missing = run_cli(["evaluate", tiny_bert_dir, "--task", tmp_path / "fid.yaml"], capsys)
    assert missing.code == 2 and "needs a reference model" in missing.stderr
    none = run_cli(["evaluate", run], capsys)
    assert none.code == 2 and "no task given" in none.stderr


def test_relation_kl_on_held_out_text(tiny_bert_dir, corpus_file, tmp_path, capsys):
    (tmp_path / "fid.yaml").write_text("kind: fidelity\ndata: {test: held.txt}\n")
    (tmp_path / "held.txt").write_text("a sentence the student never saw\nanother one, quite different\n"
                                       "the weather is nice today\nwhere is the station\n")
    kl = {}
    for name, extra in (("copy", ["--steps", "0", "student.init_from_teacher_layers=[1,2,3,4]"]),
                        ("random", ["--steps", "0"])):
        run = tmp_path / name
        assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, "--layers", "4",
                        "--hidden", "64", "--heads", "4", "--relation-heads", "4", *extra], capsys).code == 0
        result = run_cli(["evaluate", run, "--task", tmp_path / "fid.yaml"], capsys)
        assert result.code == 0, result.stderr
        scores = {s["metric"]: s["value"] for s in json.loads((run / "eval.json").read_text())["scores"]}
        assert scores["relation_kl"] == pytest.approx(scores["relation_kl_qq"] + scores["relation_kl_kk"] + scores["relation_kl_vv"])
        kl[name] = scores["relation_kl"]
    # A student whose last layer is a copy of the teacher's chosen layer has the teacher's relations.
    assert kl["copy"] == pytest.approx(0.0, abs=1e-6) and kl["random"] > 1e-3


def test_evaluate_an_openvino_variant_folder(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """`compress evaluate RUN/export/openvino-int8` scores the IR exactly as `compress bench` does; its FP32 IR
    scores as the FP32 ONNX export does."""
    pytest.importorskip("openvino")
    from bench.stage import exported_variants, score_variants
    from bench.tasks import load_task
    from reference.tiny_models import SAMPLE_TEXT

    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *TINY_DISTILL],
                   capsys).code == 0
    export = run_cli(["export", run, "--int8", "--runtime", "onnxruntime,openvino"], capsys)
    assert export.code == 0, export.stderr
    task = tmp_path / "fid.yaml"
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in SAMPLE_TEXT[:40]))
    task.write_text("kind: fidelity\ndata: {test: test.jsonl}\n")
    scores = {}
    for name in ("openvino-int8", "openvino-fp32", "fp32"):
        result = run_cli(["evaluate", run / "export" / name, "--task", task, "--reference", tiny_bert_dir,
                          "--json", tmp_path / f"{name}.json"], capsys)
        assert result.code == 0, result.stderr
        assert "fid similarity_correlation" in result.stdout and "Traceback" not in result.stderr
        scores[name] = {s["metric"]: s["value"] for s in json.loads((tmp_path / f"{name}.json").read_text())
                        if s["language"] is None}
    (variant,) = [v for v in exported_variants(run, "") if v.name == "student-openvino-int8"]
    bench = {s["metric"]: s["value"] for s in score_variants([variant], [load_task(str(task))], "cpu")
             if s["language"] is None}
    assert scores["openvino-int8"] == pytest.approx(bench, abs=1e-6)
    assert scores["openvino-fp32"] == pytest.approx(scores["fp32"], abs=1e-4)
