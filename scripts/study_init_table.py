"""Print the tables of docs/results.md's "Students cut out of the teacher" from scripts/study_init.sh's run folders.

    python scripts/study_init_table.py runs/study-init

A row whose work is not finished yet prints "–" in the cells it lacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from study_table import finetuned, fmt, overall  # scripts/study_table.py: the same cells for the first study

TASKS = [("langid", "accuracy"), ("bitext", "accuracy"), ("fidelity", "similarity_correlation"), ("fidelity", "relation_kl")]
HEADER = ["teacher → student", "init", "distill steps", "lr", "sentiment acc (fine-tuned)",
          "language id acc (probe)", "bitext top-1", "fidelity corr.", "relation KL (lower is better)"]


def row(run: Path) -> list[str] | None:
    manifest = run / "manifest.json"
    if not manifest.exists():
        return None
    distill = json.loads(manifest.read_text())["stages"]["distill"]
    student = distill["config"]["student"]
    teacher = "e5-small" if run.name.startswith("e5") else "MiniLM-L6"
    init = distill["resolved"].get("init", {"kind": "random"})
    how = init["kind"]
    if how == "teacher":
        layers = ",".join(map(str, init["teacher_layers"]))
        how = f"teacher: layers {layers}, {init['criterion']}"
    scores = json.loads((run / "eval.json").read_text())["scores"] if (run / "eval.json").exists() else []
    sentiment = finetuned(run / "finetune" / "sentiment-en")
    metrics = distill.get("metrics", {})
    shape = f"{student['layers']}×{student['hidden']}"
    return ([f"{teacher} → {shape}", how,
             str(metrics.get("step", 0)), f"{distill['config']['train']['lr']:g}", fmt(sentiment)]
            + [fmt(overall(scores, task, metric)) for task, metric in TASKS])


def main(out: Path) -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        cells = row(run)
        if cells:
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/study-init"))
