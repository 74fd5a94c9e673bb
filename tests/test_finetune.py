"""compress finetune: a learnable toy task, the saved classifier, ONNX parity of its scores, resume, bad input."""

import json
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bench.encoders import OrtEncoder
from bench.evaluate import classification_scores
from bench.tasks import load_task
from bench.torch_encoder import TorchEncoder
from compress.train_loop import cpu_has_native_bf16
from export.onnx_export import export_fp32
from reference.tiny_models import _COMMON_WORDS
from tests.cli_runner import cli_command, cli_env, run_cli


def write_toy_task(folder, epochs=2, sizes=(320, 80, 80)):
    """Label = which of two marker words the sentence holds, among six random common words."""
    words = [w for w in _COMMON_WORDS if w not in ("water", "oil")]
    rng = random.Random(0)
    for split, n in zip(("train", "dev", "test"), sizes):
        lines = []
        for _ in range(n):
            label = rng.choice(["water", "oil"])
            sentence = rng.sample(words, 6)
            sentence.insert(rng.randrange(7), label)
            lines.append(json.dumps({"text": " ".join(sentence), "label": label}))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    spec = folder / "toy.yaml"
    spec.write_text("kind: classification\ndata: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl}\n"
                    f"language_field: null\nmax_length: 32\nfinetune: {{epochs: {epochs}, lr: 1.0e-3, batch_size: 16}}\n")
    return spec


def test_finetune_learns_a_toy_task_and_exports(tiny_bert_dir, tmp_path, capsys):
    spec = write_toy_task(tmp_path)
    run = tmp_path / "run"
    result = run_cli(["finetune", run, "--task", spec, "--model", tiny_bert_dir, "--name", "toy"], capsys)
    assert result.code == 0, result.stderr
    out = run / "finetune" / "toy"
    scores = json.loads((out / "scores.json").read_text())
    test_acc = next(s["value"] for s in scores["test"] if s["metric"] == "accuracy")
    assert test_acc >= 0.9  # chance is 0.5
    assert [h["epoch"] for h in scores["dev"]["history"]] == [1, 2]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "oil", 1: "water"}
    manifest = json.loads((run / "manifest.json").read_text())["stages"]["finetune/toy"]
    assert manifest["status"] == "complete" and manifest["metrics"]["test_accuracy"] == test_acc
    assert manifest["resolved"]["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")  # precision=auto on CPU
    assert not any(p.name.startswith(".") for p in (run / "finetune").iterdir())  # no work folder left

    # The exported classifier scores the same in ONNX Runtime as in PyTorch.
    export_fp32(out, tmp_path / "onnx", task="text-classification", opset=18)
    task = load_task(str(spec))
    ort_scores = classification_scores(task, OrtEncoder(tmp_path / "onnx"))
    torch_scores = classification_scores(task, TorchEncoder(out))
    assert [s["value"] for s in ort_scores] == pytest.approx([s["value"] for s in torch_scores])
    assert {s["method"] for s in ort_scores} == {"head"}
    enc = TorchEncoder(out)
    texts = [json.loads(line)["text"] for line in (tmp_path / "test.jsonl").read_text().splitlines()[:8]]
    np.testing.assert_allclose(OrtEncoder(tmp_path / "onnx").logits(texts), enc.logits(texts), atol=1e-4)

    again = run_cli(["finetune", run, "--task", spec, "--model", tiny_bert_dir, "--name", "toy"], capsys)
    assert again.code == 2 and "already exists" in again.stderr


def test_finetune_in_bf16_on_cpu(tiny_bert_dir, tmp_path, capsys):
    """--precision bf16 trains under bf16 autocast on any CPU (emulated where it is not native), records it, and
    still learns; the saved weights stay fp32."""
    spec = write_toy_task(tmp_path)
    run = tmp_path / "run"
    result = run_cli(["finetune", run, "--task", spec, "--model", tiny_bert_dir, "--name", "toy", "--precision", "bf16"],
                     capsys)
    assert result.code == 0, result.stderr
    assert json.loads((run / "manifest.json").read_text())["stages"]["finetune/toy"]["resolved"] == {"precision": "bf16"}
    scores = json.loads((run / "finetune" / "toy" / "scores.json").read_text())
    assert next(s["value"] for s in scores["test"] if s["metric"] == "accuracy") >= 0.9
    model = AutoModelForSequenceClassification.from_pretrained(run / "finetune" / "toy")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert run_cli(["finetune", run, "--task", spec, "--model", tiny_bert_dir, "--name", "t2", "--precision", "fp16"],
                   capsys).code == 2


def test_interrupted_finetune_resumes(tiny_bert_dir, tmp_path, capsys):
    spec = write_toy_task(tmp_path, epochs=3, sizes=(960, 80, 80))
    run = tmp_path / "run"
    args = ["finetune", run, "--task", spec, "--model", tiny_bert_dir, "--name", "toy"]
    proc = subprocess.Popen(cli_command(args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    best = run / "finetune" / ".toy.work" / "best.json"
    deadline = time.time() + 120
    while not best.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert json.loads((run / "manifest.json").read_text())["stages"]["finetune/toy"]["status"] == "interrupted"
    assert not (run / "finetune" / "toy").exists()

    result = run_cli(args + ["--resume"], capsys)
    assert result.code == 0, result.stderr
    history = json.loads((run / "finetune" / "toy" / "scores.json").read_text())["dev"]["history"]
    assert [h["epoch"] for h in history][-1] == 3
    assert run_cli(args + ["--resume"], capsys).code == 0  # a finished fine-tune: nothing to do


@pytest.mark.parametrize("args, message", [
    (["--task", "bitext"], "needs a classification task"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "TOY", "--model", "student"], "has no student/"),
    (["--task", "TOY", "--model", "teacher"], "no distillation record"),
    (["--task", "TOY", "--model", "/does/not/exist"], "neither student, teacher nor a model folder"),
    (["--task", "TOY", "--model", "MODEL", "--resume"], "nothing to resume"),
])
def test_bad_input(args, message, tiny_bert_dir, tmp_path, capsys):
    spec = write_toy_task(tmp_path)
    args = [str(spec) if a == "TOY" else str(tiny_bert_dir) if a == "MODEL" else a for a in args]
    result = run_cli(["finetune", tmp_path / "run", *args], capsys)
    assert result.code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
