"""What benchmarks/plan_speed.py and plan_vs_bench.py share: their command line, and the teacher, shapes, text and
settings they time with, set up as ``compress plan`` sets them up."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


@dataclass
class PlanSetup:
    """The teacher's config, architecture spec and tokenizer, the shapes to time, the plan's settings (``cfg``), the
    thread count, the bench settings a plan times with (``timing_cfg``), the export variant and the timing text."""

    config: Any
    spec: Any
    tokenizer: Any
    shapes: list
    cfg: Any
    threads: int
    timing_cfg: Any
    variant: str
    lines: list[str]


def parse_args(doc: str, shapes: str, rounds: int, min_time: float) -> argparse.Namespace:
    """--teacher, --shapes (LAYERSxHIDDEN, comma-separated; default ``shapes``), --runtime, --precision, --rounds,
    --min-time (seconds each timing takes at least)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--shapes", default=shapes, help="LAYERSxHIDDEN, comma-separated")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--min-time", type=float, default=min_time)
    return ap.parse_args()


def plan_setup(a: argparse.Namespace) -> PlanSetup:
    """Shapes ``2x192,6x384`` get the teacher's head size and FFN / hidden ratio."""
    from bench.machine import bench_threads
    from bench.plan import Shape, bench_config, plan_lines, variant_for
    from compress.config import PlanConfig
    from compress.teacher import load_teacher_config, load_tokenizer

    config, spec = load_teacher_config(a.teacher)
    tokenizer = load_tokenizer(a.teacher)
    c = config.to_dict()
    head = c[spec.hidden_key] // c[spec.heads_key]
    ratio = c[spec.ffn_key] / c[spec.hidden_key]
    shapes = [Shape(int(layers), int(hidden), int(hidden) // head, int(int(hidden) * ratio))
              for layers, hidden in (s.split("x") for s in a.shapes.split(","))]
    cfg = PlanConfig(teacher=a.teacher, budget_ms=1e9, runtime=a.runtime, precision=a.precision, min_time_s=a.min_time)
    threads, _ = bench_threads(None)
    return PlanSetup(config, spec, tokenizer, shapes, cfg, threads, bench_config(cfg, threads),
                     variant_for(a.runtime, a.precision), plan_lines(cfg, tokenizer))
