"""Print the reproduction table of docs/results.md from the run folders of scripts/study_*.sh.

    python scripts/study_table.py runs/study
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TASKS = [("langid", "accuracy", "language id (probe) acc"), ("bitext", "accuracy", "bitext top-1 (mean of both ways)"),
         ("fidelity", "similarity_correlation", "fidelity: similarity corr.")]


def overall(scores: list[dict], task: str, metric: str) -> float | None:
    return next((s["value"] for s in scores if s["task"] == task and s["metric"] == metric and s["language"] is None), None)


def finetuned(folder: Path) -> float | None:
    path = folder / "scores.json"
    if not path.exists():
        return None
    return overall(json.loads(path.read_text())["test"], "sentiment-en", "accuracy")


def relation_kl(run: Path, scores: list[dict]) -> float:
    """The training loss (sum of Q-Q, K-K, V-V relation KL) against the teacher on the held-out fidelity text:
    from the run's eval.json when `compress evaluate` recorded it, else computed here (older caches)."""
    recorded = overall(scores, "fidelity", "relation_kl")
    if recorded is not None:
        return recorded
    from bench.tasks import load_task
    from bench.evaluation import relation_kl_to_teacher

    distill = json.loads((run / "manifest.json").read_text())["stages"]["distill"]
    task = load_task("fidelity")
    return relation_kl_to_teacher(run / "student", distill["config"]["teacher"], task.texts(task.rows("test")),
                                  teacher_layer=12, relation_heads=distill["resolved"]["relation_heads"],
                                  max_length=task.max_length, device="cpu")["relation_kl"]


def row(name: str, run: Path) -> list[str]:
    manifest = json.loads((run / "manifest.json").read_text())["stages"]["distill"]
    scores = json.loads((run / "eval.json").read_text())["scores"] if (run / "eval.json").exists() else []
    cells = [name, f"{manifest['metrics'].get('step', 0)}", fmt(finetuned(run / "finetune" / "sentiment-en"))]
    return cells + [fmt(overall(scores, task, metric)) for task, metric, _ in TASKS] + [fmt(relation_kl(run, scores))]


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def main(out: Path) -> None:
    rows = [row("MiniLMv2 relations, teacher layer 12 (last)", out / "sweep" / "layer-12"),
            row("(a) init from teacher layers 2,4,…,12, no distillation", out / "init-every-other"),
            row("(a′) init from teacher layers 2,4,…,12, then relations (layer 12)", out / "init-every-other-relations"),
            row("(b) hidden-state MSE distillation (layer 12)", out / "hidden-mse")]
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    teacher = next(r for r in sweep["rows"] if r["teacher_layer"] == "teacher")
    rows.append(["teacher (multilingual-e5-small, 12×384)", "–",
                 fmt(finetuned(out / "sweep" / "layer-12" / "finetune" / "sentiment-en-teacher"))]
                + [fmt(overall(teacher["scores"], t, m)) if t != "fidelity" else "1 (itself)" for t, m, _ in TASKS] + ["0"])
    header = (["student (6×384)", "distill steps", "sentiment acc (fine-tuned)"] + [label for *_, label in TASKS]
              + ["relation KL to teacher layer 12 (lower is better)"])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("Teacher-layer sweep (MiniLMv2 relations, same budget):")
    print()
    print((out / "sweep" / "sweep.md").read_text().split("\n", 4)[4])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/study"))
