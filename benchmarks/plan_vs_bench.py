"""Does ``compress plan`` measure what ``compress bench`` measures? Three candidate shapes of a teacher are each
exported twice: as the plan exports them (bench.plan.export_candidate with only the embedding rows the timing
text uses, bench.plan.timing_vocabulary) and whole, as ``compress export`` writes a distilled student of that shape
(the same call without cutting the table). Then, in alternating rounds, each plan export is timed the plan's way
(alone, bench.plan.time_candidate) and the three whole ones the bench's way (bench.stage.run over the three export
folders as run folders, variants alternating). Printed per shape: the median over rounds of plan / bench for the
end-to-end and the model-call p50 (1.00: the same figure). Both use the same thread count.

    python benchmarks/plan_vs_bench.py --teacher "$(compress assets path e5)" [--shapes 2x192,4x256,6x384] [--rounds 5]
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.plan_setup import parse_args, plan_setup


def main() -> None:
    from bench import stage
    from bench.plan import export_candidate, time_candidate, timing_vocabulary
    from compress.config import BenchConfig
    from export.isa import cpu_features

    a = parse_args(__doc__, shapes="2x192,4x256,6x384", rounds=5, min_time=1.0)
    setup = plan_setup(a)
    config, spec, tokenizer, shapes, cfg = setup.config, setup.spec, setup.tokenizer, setup.shapes, setup.cfg
    threads, plan_cfg, variant, lines = setup.threads, setup.timing_cfg, setup.variant, setup.lines
    # per shape and way: one (end-to-end p50, model-call p50) per round
    figures: dict[str, dict[str, list[tuple[float, float]]]] = {str(s): {"plan": [], "bench": []} for s in shapes}
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
        for r in range(a.rounds):  # plan first in even rounds, bench first in odd ones
            for way in ("plan", "bench") if r % 2 == 0 else ("bench", "plan"):
                if way == "plan":
                    for shape in shapes:
                        got = time_candidate(timed[str(shape)], plan_cfg, lines)
                        figures[str(shape)]["plan"].append((got["end_to_end_p50_ms"], got["p50_ms"]))
                    continue
                results = stage.run(bench_cfg, runs, Path(tmp) / "bench")
                for shape, run in zip(shapes, runs):
                    # the bench's row of the whole export's file at the plan's variant (the export made fp32 too)
                    prefix = f"{run.name}/" if len(runs) > 1 else ""  # as bench.stage names a run's variants
                    row = next(t for t in results["timings"] if t["variant"] == f"{prefix}student-{variant}"
                               and (t["batch"], t["seq_len"]) == (cfg.batch_size, cfg.seq_length))
                    figures[str(shape)]["bench"].append((row["end_to_end"]["p50_ms"], row["p50_ms"]))
            print(f"round {r + 1}/{a.rounds}: " + json.dumps(
                {k: {w: [round(x, 3) for x in v[w][-1]] for w in v} for k, v in figures.items()}), flush=True)
    print(f"\n{cpu_features().get('model')}, {threads} threads, {variant}, batch {cfg.batch_size} × {cfg.seq_length}, "
          f"{a.rounds} rounds. plan/bench: median of the rounds' ratios [lowest, highest]; noise: how far one way's "
          "rounds spread, (highest − lowest) / 2 / median, the larger of the two ways")
    print("shape     metric        plan ms   bench ms   plan/bench              noise   within noise")
    for name, v in figures.items():
        for i, metric in enumerate(("end-to-end", "model call")):
            plan, bench = [x[i] for x in v["plan"]], [x[i] for x in v["bench"]]
            ratios = [p / b for p, b in zip(plan, bench)]
            noise = max((max(xs) - min(xs)) / 2 / statistics.median(xs) for xs in (plan, bench))
            ratio = statistics.median(ratios)
            print(f"{name:<8}  {metric:<11} {statistics.median(plan):8.2f} {statistics.median(bench):10.2f}   "
                  f"{ratio:6.3f} [{min(ratios):.2f}, {max(ratios):.2f}]   ±{100 * noise:4.1f}%   "
                  f"{'yes' if abs(ratio - 1) <= noise else 'no'}")


if __name__ == "__main__":
    main()
