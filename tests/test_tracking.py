"""train.report_to: the metrics and the config reach TensorBoard's and MLflow's local stores in the run folder,
equal to metrics.jsonl; a resume continues them; a tracker that is not installed is one line and exit code 2."""

import importlib.util
import json
import subprocess
import sys

import pytest

from compress.config import DistillConfig, FinetuneConfig, build_config
from compress.errors import UserError
from tests.cli_runner import cli_env, run_cli
from tests.test_finetune import write_toy_task

SMALL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "4", "--max-length", "32"]
needs = {name: pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs {name}")
         for name in ("tensorboard", "mlflow")}


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _tensorboard(folder) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
    """Scalars {tag: [(step, value)]} and hparams {name: value as text} of one TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    hparams: dict[str, str] = {}
    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        for name, value in data.session_start_info.hparams.items():
            hparams[name] = value.string_value or str(value.number_value if value.HasField("number_value") else value.bool_value)
    return scalars, hparams


def _mlflow(run_dir, stage):
    """(MLflow client, run) of ``stage`` in the run folder's local store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'tracking' / 'mlflow' / 'mlflow.db'}")
    run_id = (run_dir / "tracking" / "mlflow" / f"{stage}.run_id").read_text().strip()
    return client, client.get_run(run_id)


def _assert_same_as_jsonl(lines, scalars):
    """Every key of every metrics.jsonl line, at its step, equals the tracker's point (TensorBoard stores float32)."""
    keys = {k for line in lines for k in line} - {"step"}
    assert keys <= set(scalars) and {"loss", "lr", "grad_norm", "tokens_per_s"} <= keys
    for key in keys:
        expected = [(line["step"], line[key]) for line in lines]
        got = sorted(scalars[key])
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), key


@needs["tensorboard"]
@needs["mlflow"]
def test_distill_logs_to_tensorboard_and_mlflow_and_a_resume_continues(tiny_bert_dir, corpus_file, tmp_path, capsys,
                                                                       monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # a relative --run-dir (MLflow's store URIs need absolute paths)
    args = ["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", "run", *SMALL,
            "train.log_every=2", "train.checkpoint_every=2"]
    result = run_cli([*args, "--steps", "4", "train.report_to=[tensorboard,mlflow]"], capsys)
    assert result.code == 0, result.stderr
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]
    assert stage["config"]["train"]["report_to"] == ["tensorboard", "mlflow"]

    # A resume may change the trackers (here their order) and continues the same runs: no step twice.
    result = run_cli([*args, "--steps", "8", "--resume", "train.report_to=mlflow,tensorboard"], capsys)
    assert result.code == 0, result.stderr
    lines = _metrics(run_dir / "distill" / "metrics.jsonl")
    assert [line["step"] for line in lines] == [2, 4, 6, 8]
    assert all(line["grad_norm"] > 0 for line in lines) and {"qq", "kk", "vv"} <= set(lines[0])

    scalars, hparams = _tensorboard(run_dir / "tracking" / "tensorboard" / "distill")
    _assert_same_as_jsonl(lines, scalars)
    assert hparams["train.steps"] in ("4.0", "8.0") and hparams["teacher"] == str(tiny_bert_dir)
    assert float(hparams["resolved.teacher_layer"]) == stage["resolved"]["teacher_layer"]
    assert hparams["inputs.teacher.sha256"] == stage["inputs"]["teacher"]["sha256"]

    client, run = _mlflow(run_dir, "distill")
    assert run.info.run_name == "distill" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "run"  # the run folder's name
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
               for key in run.data.metrics}
    _assert_same_as_jsonl(lines, history)
    params = run.data.params
    assert params["train.steps"] == "4" and params["train.lr"] == "0.0006" and params["teacher"] == str(tiny_bert_dir)
    assert params["student.layers"] == "2" and params["resolved.relation_heads"] and params["versions.torch"]
    assert params["inputs.corpora.0.path"].endswith("corpus.txt")


@pytest.mark.parametrize("name", ["wandb", "trackio"])
def test_a_missing_tracker_is_one_line_and_exit_2_before_training(name, tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL, "--steps", "2",
            f"train.report_to={name}"]
    if importlib.util.find_spec(name) is None:
        result = run_cli(args, capsys)
        code, err = result.code, result.stderr
    else:  # installed here: hide it from a subprocess's imports
        hide = (f"import sys, importlib.abc\nclass Hide(importlib.abc.MetaPathFinder):\n"
                f"    def find_spec(self, fullname, path, target=None):\n"
                f"        if fullname.split('.')[0] == {name!r}: raise ModuleNotFoundError(fullname)\n"
                f"sys.meta_path.insert(0, Hide())\nfrom compress.cli import main\nsys.argv = ['compress'] + sys.argv[1:]\nmain()\n")
        proc = subprocess.run([sys.executable, "-c", hide, *map(str, args[0:])], capture_output=True, text=True,
                              env=cli_env(), timeout=300)
        code, err = proc.returncode, proc.stderr
    label = {"wandb": "Weights & Biases", "trackio": "Trackio"}[name]
    assert code == 2
    assert err.strip().splitlines()[-1] == f"error: train.report_to={name} needs {label}: pip install 'relation-compress[{name}]'"
    assert "Traceback" not in err and not (run_dir / "distill").exists()


def test_report_to_values():
    build = lambda *o: build_config(DistillConfig, overrides=list(o)).train.report_to  # noqa: E731
    assert build() == [] and build("train.report_to=none") == [] and build("train.report_to=null") == []
    assert build("train.report_to=tensorboard") == ["tensorboard"]
    assert build("train.report_to=TensorBoard, mlflow,tensorboard") == ["tensorboard", "mlflow"]
    assert build("train.report_to=[wandb,trackio]") == ["wandb", "trackio"]
    with pytest.raises(UserError, match=r"train\.report_to\.0: Input should be 'tensorboard'"):
        build("train.report_to=comet")
    assert build_config(FinetuneConfig, flags={"task": "t"}).report_to is None  # None: as the distillation


@needs["tensorboard"]
def test_qat_and_finetune_log_to_tensorboard(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """QAT (its TrainConfig's report_to) and fine-tuning (the distillation's train.report_to by default) log their
    own stages beside the distillation's."""
    from transformers import AutoModel, AutoTokenizer

    from compress.architectures import arch_spec
    from compress.config import TrainConfig
    from export.qat import fake_quantized, retrain

    run_dir = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL,
                      "--steps", "2", "train.report_to=tensorboard"], capsys)
    assert result.code == 0, result.stderr

    student, reference = AutoModel.from_pretrained(run_dir / "student"), AutoModel.from_pretrained(run_dir / "student")
    spec = arch_spec(student.config.model_type)
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-4, log_every=2, checkpoint_every=4, device="cpu",
                      report_to="tensorboard")
    with fake_quantized(student, spec):
        retrain(student, reference.eval(), spec=spec, reference_spec=spec, reference_layer=1,
                tokenizer=AutoTokenizer.from_pretrained(run_dir / "student"), lines=corpus_file.read_text().splitlines(),
                relation_heads=2, cfg=cfg, out_dir=run_dir / "export" / "qat", output_weight=1.0, embedding_weight=1.0,
                max_length=32)
    scalars, hparams = _tensorboard(run_dir / "tracking" / "tensorboard" / "qat")
    _assert_same_as_jsonl(_metrics(run_dir / "export" / "qat" / "metrics.jsonl"), scalars)
    assert {"out", "emb"} <= set(scalars) and hparams["qat_train.steps"] == "4.0"
    assert hparams["teacher"] == str(tiny_bert_dir)

    spec = write_toy_task(tmp_path, epochs=1, sizes=(48, 20, 20))
    result = run_cli(["finetune", run_dir, "--task", spec, "--name", "toy"], capsys)
    assert result.code == 0, result.stderr
    scalars, hparams = _tensorboard(run_dir / "tracking" / "tensorboard" / "finetune-toy")
    assert [s for s, _ in scalars["loss"]] == [3] and hparams["task"] == "toy" and hparams["finetune.name"] == "toy"
    assert sorted(p.name for p in (run_dir / "tracking" / "tensorboard").iterdir()) == ["distill", "finetune-toy", "qat"]


@needs["tensorboard"]
def test_a_resume_after_a_hard_kill_hides_the_points_after_the_checkpoint(tmp_path):
    """Points logged after the checkpoint of a killed run are replaced, not doubled, when the resume logs them."""
    from compress.tracking import open_trackers

    for start, steps, offset in ((0, (2, 4, 6), 0.0), (4, (6, 8), 0.5)):  # killed after step 6; checkpoint at 4
        trackers = open_trackers(["tensorboard"], tmp_path / "run", "distill", params={"train": {"steps": 8}})
        trackers.start(start, resumed=start > 0)
        for step in steps:
            trackers.log_metrics(step, {"step": step, "loss": step + offset, "lr": float("nan")})
        trackers.close("interrupted" if start == 0 else "finished")
    scalars, hparams = _tensorboard(tmp_path / "run" / "tracking" / "tensorboard" / "distill")
    assert scalars["loss"] == [(2, 2.0), (4, 4.0), (6, 6.5), (8, 8.5)] and "lr" not in scalars  # non-finite: skipped
    assert hparams == {"train.steps": "8.0"}
