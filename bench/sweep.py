"""``compress sweep-layers``: which teacher layer to distil from, measured (the paper's layer study).

One short distillation per candidate teacher layer, all under the same budget (the config's steps,
batch and seed), each student scored on the chosen tasks, then a table and a plot of teacher layer →
score. Every candidate is an ordinary run folder (``<out>/layer-<N>/``), so an interrupted sweep
continues where it stopped and any candidate can be exported or fine-tuned like any other run.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

from bench.evaluate import headline
from bench.tasks import TaskSpec, load_task
from compress import distill
from compress.config import DistillConfig
from compress.errors import UserError
from bench.evaluation import evaluate_model
from compress.run_dir import RunDir, atomic_write_bytes, atomic_write_text
from compress.teacher import load_teacher_config
from compress.train_loop import CHECKPOINT

log = logging.getLogger(__name__)


def candidate_layers(value: str, num_layers: int) -> list[int]:
    """``auto`` = every other layer of the upper half, ending with the last (12 → 6, 8, 10, 12);
    otherwise a comma list of 1-based layers (``last`` allowed)."""
    if value == "auto":
        return sorted({*range(num_layers, num_layers // 2 - 1, -2)})
    layers = []
    for item in value.split(","):
        item = item.strip()
        layer = num_layers if item == "last" else int(item) if item.isdigit() else None
        if layer is None or not 1 <= layer <= num_layers:
            raise UserError(f"teacher layer '{item}' is not in 1..{num_layers}: pass e.g. --teacher-layers 6,9,12 or auto")
        layers.append(layer)
    return sorted(set(layers))


def _distil(cfg: DistillConfig, folder: Path, layer: int) -> None:
    """The candidate's distillation: skipped when complete, continued when interrupted."""
    run_dir = RunDir(folder)
    record = run_dir.stage("distill")
    if record and record.get("status") == "complete":
        return
    cfg = cfg.model_copy(deep=True)
    cfg.loss.teacher_layer = layer
    distill.run(cfg, run_dir, resume=(folder / "distill" / CHECKPOINT).exists())


def run(cfg: DistillConfig, out: Path, *, teacher_layers: str, tasks: list[str], device: str = "cpu") -> dict[str, Any]:
    """Distil and score every candidate; writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` in ``out``."""
    if not cfg.teacher:
        raise UserError("no teacher given: pass --teacher (a model folder or Hugging Face id)")
    if not tasks:
        raise UserError("no task given: pass --task (e.g. --task langid --task fidelity; see configs/tasks/)")
    specs = [load_task(t) for t in tasks]
    t_config, spec = load_teacher_config(cfg.teacher)
    layers = candidate_layers(teacher_layers, t_config.to_dict()[spec.num_layers_key])
    log.info("sweep over teacher layers %s, %d steps each", layers, cfg.train.steps)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for layer in layers:
        folder = out / f"layer-{layer}"
        _distil(cfg, folder, layer)
        rows.append({"teacher_layer": layer, "loss": RunDir(folder).stage("distill")["metrics"].get("loss"),
                     "scores": evaluate_model(folder, tasks, device=device)})
    teacher_tasks = [t for t, s in zip(tasks, specs) if s.kind != "fidelity"]
    teacher_row = {"teacher_layer": "teacher", "loss": None,
                   "scores": evaluate_model(Path(cfg.teacher), teacher_tasks, device=device) if teacher_tasks else []}
    result = {"teacher": cfg.teacher, "steps": cfg.train.steps, "batch_size": cfg.train.batch_size,
              "student": cfg.student.model_dump(), "tasks": [t.name for t in specs], "rows": rows + [teacher_row]}
    atomic_write_text(out / "sweep.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "sweep.md", sweep_table(result, specs))
    plot_sweep(result, specs, out / "sweep.png")
    return result


def headline_of(row: dict, task: TaskSpec) -> float | None:
    return headline(row["scores"], task)


def sweep_table(result: dict, specs: list[TaskSpec]) -> str:
    """Markdown: one row per teacher layer (and the teacher itself), one column per task headline."""
    head = "| teacher layer | final loss | " + " | ".join(f"{t.name} {t.headline}" for t in specs) + " |"
    lines = [f"# Teacher-layer sweep: {result['teacher']}", "",
             f"{result['steps']} steps × {result['batch_size']} sequences per candidate; student "
             f"{result['student']['layers']}×{result['student']['hidden']}.", "", head,
             "|" + "---|" * (len(specs) + 2)]
    for row in result["rows"]:
        cells = [f"{v:.4f}" if (v := headline_of(row, t)) is not None else "–" for t in specs]
        loss = f"{row['loss']:.4f}" if row["loss"] is not None else "–"
        lines.append(f"| {row['teacher_layer']} | {loss} | " + " | ".join(cells) + " |")
    best = {t.name: max((r for r in result["rows"][:-1] if headline_of(r, t) is not None),
                        key=lambda r: headline_of(r, t), default=None) for t in specs}
    lines += ["", "Best layer per task: " + ", ".join(f"{k} → {v['teacher_layer']}" for k, v in best.items() if v), ""]
    return "\n".join(lines)


def plot_sweep(result: dict, specs: list[TaskSpec], path: Path) -> None:
    """Teacher layer → headline score, one line per task; the teacher's own score dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    candidates = result["rows"][:-1]
    for task in specs:
        points = [(r["teacher_layer"], headline_of(r, task)) for r in candidates]
        line, = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{task.name} ({task.headline})")
        teacher = headline_of(result["rows"][-1], task)
        if teacher is not None:
            ax.axhline(teacher, linestyle="--", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("teacher layer distilled from")
    ax.set_ylabel("score (dashed: the teacher)")
    ax.set_xticks([r["teacher_layer"] for r in candidates])
    ax.set_title(f"Teacher-layer sweep, {result['steps']} steps each")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
