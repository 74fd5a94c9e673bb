"""``compress distill`` end to end on tiny BERT, RoBERTa and XLM-R teachers (real torch and transformers)."""

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from tests.cli_runner import cli_command, cli_env, run_cli

SMALL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "8", "--max-length", "32"]


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "distill" / "metrics.jsonl").read_text().splitlines()]


def test_distill_each_family_loss_falls_and_student_loads(tiny_teacher_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_teacher_dir, "--corpus", corpus_file, "--run-dir", run_dir,
                      *SMALL, "--steps", "40", "--lr", "2e-3", "--relation-heads", "8", "train.log_every=1"], capsys)
    assert result.code == 0, result.stderr
    losses = [m["loss"] for m in _metrics(run_dir)]
    assert len(losses) == 40 and all(m["tokens_per_s"] > 0 for m in _metrics(run_dir))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)

    student = AutoModel.from_pretrained(run_dir / "student")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "student")
    teacher = AutoModel.from_pretrained(tiny_teacher_dir)
    assert type(student) is type(teacher)
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (2, 32)
    assert tokenizer("hello world")["input_ids"] == AutoTokenizer.from_pretrained(tiny_teacher_dir)("hello world")["input_ids"]

    manifest = json.loads((run_dir / "manifest.json").read_text())
    stage = manifest["stages"]["distill"]
    assert stage["status"] == "complete"
    assert stage["resolved"]["relation_heads"] == 8 and stage["resolved"]["teacher_layer"] == teacher.config.num_hidden_layers
    assert len(stage["inputs"]["teacher"]["sha256"]) == 64 and stage["inputs"]["corpora"][0]["kept_documents"] > 10
    assert stage["versions"]["torch"] and stage["config"]["train"]["steps"] == 40
    assert (run_dir / "config.yaml").exists()


def test_precision_auto_is_bf16_on_cpus_with_native_bf16(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """train.precision=auto distils in bf16 on CUDA and on CPUs with AVX-512 BF16 or AMX (measured equal to fp32 at
    equal steps, docs/benchmarks.md), fp32 elsewhere; the choice is recorded, and it really changes the arithmetic."""
    from compress.train_loop import autocast_context, cpu_has_native_bf16, resolve_precision

    assert resolve_precision("auto", torch.device("cuda")) == "bf16" and resolve_precision("fp32", torch.device("cuda")) == "fp32"
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("auto", torch.device("cpu"), cpu_bf16=False) == "fp32"  # QAT's choice on CPU
    with pytest.raises(ValueError, match="resolved precision"):  # every trainer resolves auto before training
        autocast_context(torch.device("cpu"), "auto")
    losses = {}
    for precision in ("auto", "fp32"):
        run_dir = tmp_path / precision
        result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL,
                          "--steps", "2", "train.log_every=1", f"train.precision={precision}"], capsys)
        assert result.code == 0, result.stderr
        stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]
        assert stage["resolved"]["precision"] == (expected if precision == "auto" else "fp32")
        losses[precision] = _metrics(run_dir)[0]["loss"]
    if expected == "bf16":  # the same batch and weights: bf16 matmuls give a close, not an equal, loss
        assert losses["auto"] != losses["fp32"] and losses["auto"] == pytest.approx(losses["fp32"], rel=0.05)
    else:
        assert losses["auto"] == losses["fp32"]


def test_teacher_layer_and_init_from_teacher(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    teacher = AutoModel.from_pretrained(tiny_bert_dir)
    hidden, heads = teacher.config.hidden_size, teacher.config.num_attention_heads
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir,
                      "--layers", "2", "--hidden", hidden, "--heads", heads, "--teacher-layer", "2", "--steps", "3",
                      "student.init_from_teacher_layers=[1,2]", "train.lr=1e-9"], capsys)
    assert result.code == 0, result.stderr
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]
    assert stage["resolved"]["teacher_layer"] == 2
    student = load_file(run_dir / "student" / "model.safetensors")
    # With a negligible learning rate the copied teacher layer survives.
    torch.testing.assert_close(student["encoder.layer.1.attention.self.key.weight"],
                               teacher.encoder.layer[1].attention.self.key.weight, atol=1e-6, rtol=0)


def _start(args):
    return subprocess.Popen(cli_command(args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out waiting for " + str(path)
        time.sleep(0.005)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_bert_dir, corpus_file, tmp_path):
    common = ["--teacher", tiny_bert_dir, "--corpus", corpus_file, *SMALL, "--steps", "60",
              "train.checkpoint_every=5", "train.log_every=1"]
    reference = tmp_path / "reference"
    proc = subprocess.run(cli_command(["distill", "--run-dir", reference, *common]), env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    killed = tmp_path / "killed"
    proc = _start(["distill", "--run-dir", killed, *common])
    _wait_for(killed / "distill" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "student").exists()
    step = torch.load(killed / "distill" / "checkpoint.pt", weights_only=False)["step"]
    assert 0 < step < 60

    resumed = subprocess.run(cli_command(["distill", "--run-dir", killed, "--resume"]), env=cli_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(reference / "student" / "model.safetensors")
    b = load_file(killed / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [m["step"] for m in _metrics(killed)]
    assert steps == list(range(1, 61))  # metrics after the checkpoint were dropped, then rewritten once

    # Resuming a finished run changes nothing and says so.
    again = subprocess.run(cli_command(["distill", "--run-dir", killed, "--resume"]), env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr
    assert torch.equal(load_file(killed / "student" / "model.safetensors")[name], b[name])


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tiny_bert_dir, corpus_file, tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL,
                   "--steps", "100000", "train.checkpoint_every=100000", "train.log_every=1"])
    _wait_for(run_dir / "distill" / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    state = torch.load(run_dir / "distill" / "checkpoint.pt", weights_only=False)
    assert state["step"] >= 1
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]["status"] == "interrupted"
    assert not (run_dir / "student").exists()


def test_nan_loss_stops_with_a_clear_error(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL,
                      "--steps", "50", "--lr", "1e30", "train.warmup_steps=0", "train.checkpoint_every=1"], capsys)
    assert result.code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "loss became" in line and "last good checkpoint" in line
    assert not (run_dir / "student").exists()
    assert (run_dir / "distill" / "checkpoint.pt").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("grad_accum", [1, 2])  # DDP's static graph; no_sync on the first micro-batch
def test_two_process_data_parallel_on_cpu(tiny_bert_dir, corpus_file, tmp_path, grad_accum):
    run_dir = tmp_path / "run"
    args = ["--nproc-per-node", "2", "--master-port", _free_port(), "-m",
            "compress.cli", "distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir,
            *SMALL, "--steps", "6", "--device", "cpu", f"train.grad_accum={grad_accum}"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", *map(str, args)], env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]
    assert stage["resolved"]["world_size"] == 2
    first_batches = stage["ranks"]["first_batch_sha256"]
    assert len(first_batches) == 2 and first_batches[0] != first_batches[1]  # ranks read different data
    assert len(stage["ranks"]["weights_sha256"]) == 64  # equal on both ranks, or the run would have failed
    assert AutoModel.from_pretrained(run_dir / "student").config.num_hidden_layers == 2


@pytest.mark.slow
def test_torch_compile_path(tiny_bert_dir, corpus_file, tmp_path, capsys):
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", tmp_path / "run",
                      *SMALL, "--steps", "4", "train.compile=true"], capsys)
    assert result.code == 0, result.stderr


@pytest.mark.gpu
def test_distill_on_cuda_bf16(tiny_teacher_dir, corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_teacher_dir, "--corpus", corpus_file, "--run-dir", run_dir, *SMALL,
                      "--steps", "30", "--lr", "2e-3", "--device", "cuda", "--relation-heads", "8",
                      "train.precision=bf16", "train.log_every=1"], capsys)
    assert result.code == 0, result.stderr
    losses = [m["loss"] for m in _metrics(run_dir)]
    assert sum(losses[-5:]) < sum(losses[:5])
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]
    assert stage["resolved"]["device"].startswith("cuda")


@pytest.mark.gpu
def test_relation_loss_cuda_matches_cpu():
    from compress.relation_loss import relation_kd_loss

    torch.manual_seed(0)
    t = tuple(torch.randn(4, 33, 48) for _ in range(3))
    s = tuple(torch.randn(4, 33, 32, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 33)
    mask[1, 20:] = 0
    cpu_loss, _ = relation_kd_loss(s, t, mask, 8)
    cpu_grads = torch.autograd.grad(cpu_loss, s)
    s_gpu = tuple(x.detach().cuda().requires_grad_() for x in s)
    gpu_loss, _ = relation_kd_loss(s_gpu, tuple(x.cuda() for x in t), mask.cuda(), 8)
    gpu_grads = torch.autograd.grad(gpu_loss, s_gpu)
    assert gpu_loss.item() == pytest.approx(cpu_loss.item(), rel=1e-4)
    for a, b in zip(cpu_grads, gpu_grads):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-6)
