"""Imports run one way: compress ← export ← bench, and the CLI shell above all three.

``compress`` (config, run folder, data, loss, training, distillation) imports neither ``export`` nor
``bench``; ``export`` imports ``compress`` but not ``bench``; ``bench`` (the evaluation library and the
stages driven by it: evaluate, finetune, sweep-layers, bench) may import both. Only ``compress/cli.py``,
the command-line shell, reaches up, and only inside its commands. No installed module imports the test
suite or the experiment scripts in ``benchmarks/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ALLOWED = {"compress": {"compress"}, "export": {"compress", "export"}, "bench": {"compress", "export", "bench"}}
OURS = {"compress", "export", "bench", "tests", "benchmarks", "scripts"}


def imported_packages(path: Path) -> dict[str, int]:
    """Our top-level packages that ``path`` imports anywhere (module level or inside functions) → first line."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        for name in names:
            top = name.split(".")[0]
            if top in OURS:
                found.setdefault(top, node.lineno)
    return found


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package):
    wrong = []
    for path in modules(package):
        if path == REPO / "compress" / "cli.py":
            continue  # the shell: imports each stage inside its command
        for top, line in imported_packages(path).items():
            if top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_the_shell_imports_stages_lazily():
    """``compress/cli.py`` imports export and bench only inside commands, so `compress --help` stays light."""
    tree = ast.parse((REPO / "compress" / "cli.py").read_text(encoding="utf-8"))
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(not (getattr(n, "module", None) or "").startswith(("export", "bench")) for n in top_level)


def test_importing_compress_loads_neither_export_nor_bench():
    code = ("import sys, compress.cli, compress.distill, compress.prepare_data, compress.train_loop\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('export', 'bench', 'tests')]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
