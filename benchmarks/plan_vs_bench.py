"""Does ``compress plan`` measure what ``compress bench`` measures? Three candidate shapes of a teacher are each
exported twice: as the plan exports them (bench.plan.export_candidate with only the embedding rows the timing
text uses, bench.plan.timing_vocabulary) and whole, as ``compress export`` writes a distilled student of that shape
(the same call without cutting the table). Then, in alternating rounds, each plan export is timed the plan's way
(alone, bench.plan.time_candidate) and the three whole ones the bench's way (bench.stage.run over the three export
folders as run folders, variants alternating). Printed per shape: the median over rounds of plan / bench for the
end-to-end and the model-call p50 (1.00: the same figure). Both use the same thread count.

    python benchmarks/plan_vs_bench.py --teacher "$(compress assets path e5)" [--shapes 2x192,4x256,6x384] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    from bench import stage
    from bench.machine import bench_threads
    from bench.plan import (Shape, bench_config, export_candidate, plan_lines, time_candidate, timing_vocabulary,
                            variant_for)
    from compress.config import BenchConfig, PlanConfig
    from compress.teacher import load_teacher_config, load_tokenizer
    from export.isa import cpu_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--shapes", default="2x192,4x256,6x384", help="LAYERSxHIDDEN, comma-separated")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=1.0)
    a = ap.parse_args()

    config, spec = load_teacher_config(a.teacher)
    tokenizer = load_tokenizer(a.teacher)
    c = config.to_dict()
    head = c[spec.hidden_key] // c[spec.heads_key]
    ratio = c[spec.ffn_key] / c[spec.hidden_key]
    shapes = [Shape(int(l), int(h), int(h) // head, int(int(h) * ratio))
              for l, h in (s.split("x") for s in a.shapes.split(","))]
    cfg = PlanConfig(teacher=a.teacher, budget_ms=1e9, runtime=a.runtime, precision=a.precision, min_time_s=a.min_time)
    threads, _ = bench_threads(None)
    plan_cfg = bench_config(cfg, threads)
    variant = variant_for(a.runtime, a.precision)
    lines = plan_lines(cfg, tokenizer)
    ratios: dict[str, dict[str, list[float]]] = {str(s): {"end_to_end": [], "model_call": []} for s in shapes}
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text("\n".join(lines) + "\n", encoding="utf-8")
        small_tokenizer, ids = timing_vocabulary(tokenizer, config, None, lines, Path(tmp) / "timing-vocab")
        runs, timed = [], {}
        for shape in shapes:
            name = str(shape).replace("×", "x")
            timed[str(shape)], _, _ = export_candidate(shape, config, spec, small_tokenizer, lines, variant,
                                                       Path(tmp) / "plan" / name, None, ids)
            export_candidate(shape, config, spec, tokenizer, lines, variant, Path(tmp) / name)
            runs.append(Path(tmp) / name)
        bench_cfg = BenchConfig(batch_sizes=[cfg.batch_size], seq_lengths=[cfg.seq_length], threads=threads,
                                warmup=3, min_time_s=a.min_time * len(shapes), min_runs=10, rounds=len(shapes),
                                text=[str(text)])
        for r in range(a.rounds):
            ours = {name: time_candidate(v, plan_cfg, lines) for name, v in timed.items()}
            results = stage.run(bench_cfg, runs, Path(tmp) / "bench")
            for shape, run in zip(shapes, runs):
                # the very file the plan timed: the run's student at the plan's variant (the export made fp32 too)
                row = next(t for t in results["timings"] if t["variant"] == f"{run.name}/student-{variant}"
                           and (t["batch"], t["seq_len"]) == (cfg.batch_size, cfg.seq_length))
                ratios[str(shape)]["end_to_end"].append(ours[str(shape)]["end_to_end_p50_ms"] / row["end_to_end"]["p50_ms"])
                ratios[str(shape)]["model_call"].append(ours[str(shape)]["p50_ms"] / row["p50_ms"])
            print(f"round {r + 1}/{a.rounds}: " + json.dumps({k: {m: round(v[m][-1], 3) for m in v} for k, v in ratios.items()}),
                  flush=True)
    print(f"\n{cpu_features().get('model')}, {threads} threads, {variant}, batch {cfg.batch_size} × {cfg.seq_length}")
    print("shape     plan/bench end-to-end p50   plan/bench model-call p50   (median of rounds; each round's in brackets)")
    for name, v in ratios.items():
        print(f"{name:<8}  {statistics.median(v['end_to_end']):>10.3f} {[round(x, 3) for x in v['end_to_end']]}   "
              f"{statistics.median(v['model_call']):>10.3f} {[round(x, 3) for x in v['model_call']]}")


if __name__ == "__main__":
    main()
