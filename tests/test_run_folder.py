"""What a run folder promises: a resume keeps the run's config and data, and one process at a time holds it."""

import json
import subprocess

import pytest

from compress.config import DistillConfig
from compress.run_dir import SCHEMA_VERSION, RunDir
from tests.cli_runner import cli_command, cli_env, run_cli

SMALL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "8", "--max-length", "32",
         "--relation-heads", "8"]


@pytest.fixture
def started(tiny_bert_dir, corpus_file, tmp_path, capsys):
    """A run stopped after 4 of 8 steps (as after a kill): config.yaml, the manifest and a checkpoint exist."""
    run = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *SMALL,
                      "--steps", "4", "train.checkpoint_every=2"], capsys)
    assert result.code == 0, result.stderr
    return run


@pytest.mark.parametrize("change, named", [
    (["--teacher-layer", "2"], "loss.teacher_layer: 'auto' → 2"),
    (["--relation-heads", "4"], "loss.relation_heads: 8 → 4"),
    (["--seed", "5"], "train.seed: 42 → 5"),
    (["--max-length", "16"], "data.max_length: 32 → 16"),
    (["--lr", "1e-3"], "train.lr: 0.0006 → 0.001"),
    (["--hidden", "64", "--layers", "3"], "student.hidden: 32 → 64"),
])
def test_resume_refuses_a_changed_config_and_writes_nothing(started, change, named, capsys):
    before = {p.name: p.read_bytes() for p in (started / "config.yaml", started / "manifest.json")}
    result = run_cli(["distill", "--run-dir", started, "--resume", "--steps", "8", *change], capsys)
    assert result.code == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "--resume cannot change" in line and named in line and "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in (started / "config.yaml", started / "manifest.json")} == before
    # The run still resumes as it was started.
    assert run_cli(["distill", "--run-dir", started, "--resume", "--steps", "8"], capsys).code == 0


def test_resume_with_another_corpus_or_changed_text_is_refused(started, corpus_file, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("a different corpus\nwith other lines\n")
    result = run_cli(["distill", "--run-dir", started, "--resume", "--corpus", other], capsys)
    assert result.code == 2 and "data.corpora" in result.stderr
    with open(corpus_file, "a", encoding="utf-8") as f:
        f.write("an edit after the run started\n")
    result = run_cli(["distill", "--run-dir", started, "--resume", "--steps", "8"], capsys)
    assert result.code == 2 and "changed since" in result.stderr and "same data" in result.stderr


def test_allowed_changes_are_recorded_in_the_manifest(started, capsys):
    result = run_cli(["distill", "--run-dir", started, "--resume", "--steps", "8", "train.log_every=1"], capsys)
    assert result.code == 0, result.stderr
    stage = json.loads((started / "manifest.json").read_text())["stages"]["distill"]
    assert stage["resumes"][-1]["changed"] == {"train.log_every": [10, 1], "train.steps": [4, 8]}
    assert stage["config"]["train"]["steps"] == 8 and stage["metrics"]["step"] == 8
    steps = [json.loads(line)["step"] for line in (started / "distill" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 5, 6, 7, 8]  # the first run logged its last step; the resume logs every step after it


def test_a_second_process_is_refused_while_one_holds_the_run_folder(started, capsys):
    holder = subprocess.Popen(
        ["python3", "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "f.write('process 4242 (compress export, since now)'); f.flush(); print('held', flush=True); time.sleep(60)",
         str(started / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (["distill", "--run-dir", started, "--resume", "--steps", "8"], ["export", started],
                     ["bench", started, "--torch"]):
            result = run_cli(args, capsys)
            assert result.code == 2 and "is in use by process 4242 (compress export" in result.stderr, result.stderr
    finally:
        holder.kill()
        holder.wait()
    # A killed holder leaves its lock file behind; the kernel's lock is gone with it, so the folder is free.
    assert (started / ".lock").exists()
    assert run_cli(["distill", "--run-dir", started, "--resume", "--steps", "6"], capsys).code == 0


def test_a_run_dir_that_is_a_file_is_a_clear_error(tiny_bert_dir, corpus_file, tmp_path):
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    proc = subprocess.run(cli_command(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", file,
                                       *SMALL, "--steps", "1"]), env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Traceback" not in proc.stderr


def test_the_run_folder_api_parses_its_own_records(started, tiny_bert_dir, corpus_file, capsys):
    """The typed API: the stored config comes back as a DistillConfig, the layout from one place, the manifest
    carries its schema version, and the student carries its provenance."""
    run = RunDir(started)
    cfg = run.distill_config()
    assert isinstance(cfg, DistillConfig) and cfg.student.hidden == 32 and cfg.loss.relation_heads == 8
    assert run.teacher() == str(tiny_bert_dir) and [c.path for c in cfg.data.corpora] == [str(corpus_file)]
    assert run.student_dir == started / "student" and run.export_dir("sst2") == started / "export" / "sst2"
    assert run.export_stage("sst2") == "export/sst2" and run.exported_models() == []
    assert json.loads((started / "manifest.json").read_text())["schema"] == SCHEMA_VERSION
    facts = json.loads((started / "student" / "provenance.json").read_text())
    assert facts["teacher"] == str(tiny_bert_dir) and facts["relation_heads"] == 8 and facts["steps"] == 4
    assert facts["teacher_layer"] == 4 and facts["corpora"][0]["fingerprint"]["sha256"]
    assert DistillConfig.model_validate(facts["config"]) == cfg
    assert RunDir(started.parent / "nothing-here").distill_config() is None


def test_a_manifest_from_a_newer_layout_or_damaged_is_refused(started, capsys):
    manifest = json.loads((started / "manifest.json").read_text())
    (started / "manifest.json").write_text(json.dumps({**manifest, "schema": SCHEMA_VERSION + 1}))
    result = run_cli(["export", started], capsys)
    assert result.code == 2 and "newer relation-compress" in result.stderr and "Traceback" not in result.stderr
    (started / "manifest.json").write_text("{ not json")
    result = run_cli(["export", started], capsys)
    assert result.code == 2 and "is damaged" in result.stderr and "Traceback" not in result.stderr
