"""Run the real ``compress`` CLI, in this process (fast) or as a subprocess (for signals and torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


# A 2-step distillation into a 2×32 student: the finished run that export, bench and deploy tests start from.
TINY_DISTILL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "4", "--max-length", "32",
                "--steps", "2"]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], capsys) -> Result:
    """``compress ARGS`` through ``compress.cli.main`` in-process; captures its exit code and output."""
    from compress.cli import main

    old = sys.argv
    sys.argv = ["compress", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def cli_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "compress.cli", *map(str, args)]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli_subprocess(args: list[str], timeout: float = 300) -> Result:
    proc = subprocess.run(cli_command(args), capture_output=True, text=True, timeout=timeout, env=cli_env())
    return Result(proc.returncode, proc.stdout, proc.stderr)
