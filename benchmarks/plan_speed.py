"""``compress plan``'s cost per candidate: exporting the whole vocabulary table against only the rows the timing
text uses (bench.plan.timing_vocabulary), and whether the two time alike.

For each shape, in alternating rounds (the order swapped every round), one candidate is built, exported and timed
both ways through the plan's own functions (bench.plan.export_candidate, bench.plan.time_candidate): ``whole`` as
the plan did before (the teacher's vocabulary, e5's 250k rows), ``rows`` as it does now. Printed per shape: the
median wall seconds of each and their ratio, and the ratio of their end-to-end and model-call p50 (rows / whole;
1.00: cutting the table does not change what is timed), with the reported sizes (they should agree).

    python benchmarks/plan_speed.py --teacher "$(compress assets path e5)" [--shapes 2x192,6x384] [--rounds 3]
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.plan_setup import parse_args, plan_setup


def main() -> None:
    from bench.plan import export_candidate, time_candidate, timing_vocabulary
    from export.isa import cpu_features

    a = parse_args(__doc__, shapes="2x192,6x384", rounds=3, min_time=0.5)
    setup = plan_setup(a)
    config, spec, tokenizer, shapes, cfg = setup.config, setup.spec, setup.tokenizer, setup.shapes, setup.cfg
    threads, timing_cfg, variant, lines = setup.threads, setup.timing_cfg, setup.variant, setup.lines
    figures: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        small, ids = timing_vocabulary(tokenizer, config, None, lines, Path(tmp) / "timing-vocab")
        ways = {"whole": (tokenizer, None), "rows": (small, ids)}
        for r in range(a.rounds):
            for shape in shapes:
                for way in list(ways) if r % 2 == 0 else list(ways)[::-1]:
                    work = Path(tmp) / "work"
                    start = time.perf_counter()
                    timed, size, _ = export_candidate(shape, config, spec, ways[way][0], lines, variant, work, None,
                                                      ways[way][1])
                    measured = time_candidate(timed, timing_cfg, lines)
                    wall = time.perf_counter() - start
                    shutil.rmtree(work)
                    figures.setdefault((str(shape), way), []).append({"wall_s": wall, "size": size, **measured})
                    print(f"round {r + 1}/{a.rounds} {shape} {way}: {wall:.1f} s, p50 {measured['p50_ms']:.2f} ms, "
                          f"end to end {measured['end_to_end_p50_ms']:.2f} ms", flush=True)

    def med(shape: str, way: str, key: str) -> float:
        return statistics.median(f[key] for f in figures[(shape, way)])

    print(f"\n{cpu_features().get('model')}, {threads} threads, {variant}, batch {cfg.batch_size} × {cfg.seq_length}; "
          f"{len(ids):,} of {config.vocab_size:,} rows; medians of {a.rounds} rounds")
    print("shape     whole s   rows s   speed-up   rows/whole e2e p50   rows/whole call p50   MiB whole / rows")
    for shape in (str(s) for s in shapes):
        print(f"{shape:<8} {med(shape, 'whole', 'wall_s'):8.1f} {med(shape, 'rows', 'wall_s'):8.1f} "
              f"{med(shape, 'whole', 'wall_s') / med(shape, 'rows', 'wall_s'):9.2f}× "
              f"{med(shape, 'rows', 'end_to_end_p50_ms') / med(shape, 'whole', 'end_to_end_p50_ms'):19.3f} "
              f"{med(shape, 'rows', 'p50_ms') / med(shape, 'whole', 'p50_ms'):21.3f}   "
              f"{med(shape, 'whole', 'size') / 2**20:.1f} / {med(shape, 'rows', 'size') / 2**20:.1f}")


if __name__ == "__main__":
    main()
