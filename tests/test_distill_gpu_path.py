"""What a GPU run depends on, checked on a CPU: the triton kernel inside a real distillation (under Triton's
interpreter), a run killed while its loader workers live, RNG states from a checkpoint, the scoped numeric
switches, and the way back from a damaged student."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compress.distributed import rng_state, set_rng_state
from compress.numerics import CUBLAS_WORKSPACE, run_numerics
from compress.train_loop import load_checkpoint
from tests.cli_runner import TINY_DISTILL, cli_command, cli_env, run_cli

SMALL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "8", "--max-length", "32"]


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "distill" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def _stage(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["stages"]["distill"]


def test_triton_kernel_follows_the_torch_kernel_step_for_step(tiny_bert_dir, corpus_file, tmp_path, capsys):
    pytest.importorskip("triton")
    runs = {}
    for kernel in ("torch", "triton"):
        runs[kernel] = tmp_path / kernel
        result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", runs[kernel],
                          *SMALL, "--steps", "8", "--relation-heads", "4", "train.log_every=1",
                          "train.precision=fp32", f"train.relation_kernel={kernel}", "train.deterministic=true"], capsys)
        assert result.code == 0, result.stderr
        resolved = _stage(runs[kernel])["resolved"]
        assert resolved["relation_kernel"] == kernel and resolved["deterministic"] is True
    torch_losses, triton_losses = _losses(runs["torch"]), _losses(runs["triton"])
    assert len(triton_losses) == 8 and torch_losses[-1] < torch_losses[0]
    assert triton_losses == pytest.approx(torch_losses, rel=1e-4)
    assert not torch.are_deterministic_algorithms_enabled()  # the switch ended with the run


def test_triton_kernel_on_cpu_without_the_interpreter_is_one_line(tiny_bert_dir, corpus_file, tmp_path):
    pytest.importorskip("triton")
    env = {k: v for k, v in cli_env().items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(cli_command(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir",
                                       tmp_path / "run", *SMALL, "--steps", "2", "--relation-heads", "4",
                                       "train.relation_kernel=triton"]),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "TRITON_INTERPRET=1" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_kill_9_while_loader_workers_live_then_resume_at_once(tiny_bert_dir, corpus_file, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(cli_command(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file,
                                         "--run-dir", run_dir, *SMALL, "--steps", "40", "train.checkpoint_every=5",
                                         "train.loader_workers=2"]),
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((run_dir / "distill" / "checkpoint.pt").exists() and len(_children(proc.pid)) >= 2):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(_alive(w) for w in workers)  # the premise: orphaned workers outlive their parent for a while

    resumed = subprocess.run(cli_command(["distill", "--run-dir", run_dir, "--resume"]), env=cli_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _stage(run_dir)["metrics"]["step"] == 40


def test_checkpoint_rng_states_restore_whatever_the_map_location(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "state.pt"
    torch.save({"rng": [rng_state()]}, path)
    expected = torch.rand(5)
    state = load_checkpoint(path)
    assert state["rng"][0]["torch"].device.type == "cpu"
    torch.manual_seed(99)
    set_rng_state(state["rng"][0])
    assert torch.equal(torch.rand(5), expected)


def test_run_numerics_scopes_tf32_and_deterministic_kernels(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    assert not torch.are_deterministic_algorithms_enabled()
    with run_numerics(torch.device("cuda"), deterministic=True):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == before
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with pytest.raises(RuntimeError):  # restored on the way out of a failure too
        with run_numerics(torch.device("cuda"), deterministic=True):
            raise RuntimeError("a failing step")
    assert not torch.are_deterministic_algorithms_enabled()
    with run_numerics(torch.device("cpu")):  # TF32 is a CUDA matter: a CPU run leaves it alone
        assert torch.backends.cuda.matmul.fp32_precision == before[0]


def test_a_damaged_student_is_rebuilt_by_resume(tiny_bert_dir, corpus_file, tmp_path, capsys, caplog):
    run_dir = tmp_path / "run"
    common = ["--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *TINY_DISTILL]
    assert run_cli(["distill", *common], capsys).code == 0
    weights = run_dir / "student" / "model.safetensors"
    good = {k: v.clone() for k, v in load_file(weights).items()}  # load_file maps the file, which is cut below
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # as a full disk leaves it

    refused = run_cli(["export", run_dir], capsys)
    assert refused.code == 2
    remedy = f"compress distill --run-dir {run_dir} --resume"
    assert remedy in refused.stderr and "Traceback" not in refused.stderr
    again = run_cli(["distill", *common], capsys)  # without --resume: refused, naming --resume
    assert again.code == 2 and "--resume" in again.stderr

    rebuilt = run_cli(["distill", "--run-dir", run_dir, "--resume"], capsys)  # the remedy, as the message says
    assert rebuilt.code == 0, rebuilt.stderr
    assert "is damaged: rebuilding it from" in caplog.text
    restored = load_file(weights)
    assert all(torch.equal(restored[k], good[k]) for k in good)
    assert run_cli(["export", run_dir], capsys).code == 0


def test_a_killed_run_is_told_to_resume(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """A run with a checkpoint but no student: the export's message names --resume, which works."""
    run_dir = tmp_path / "run"
    common = ["--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run_dir, *TINY_DISTILL]
    assert run_cli(["distill", *common, "train.checkpoint_every=1"], capsys).code == 0
    import shutil

    shutil.rmtree(run_dir / "student")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"]["distill"]["status"] = "interrupted"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    refused = run_cli(["export", run_dir], capsys)
    assert refused.code == 2 and f"compress distill --run-dir {run_dir} --resume" in refused.stderr
    assert run_cli(["distill", "--run-dir", run_dir, "--resume"], capsys).code == 0
    assert (run_dir / "student" / "model.safetensors").exists()
