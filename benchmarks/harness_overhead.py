"""How much does the timing harness add? ``measure(SessionRunner(...))`` against a bare ``session.run`` loop.

For each model it makes one CPU session and one set of real-text inputs, then, in several rounds that alternate
which side goes first (so drift and thermal effects hit both alike), runs the same number of calls

  bare     ``for _ in range(n): session.run(None, feeds)``, timed as a whole: wall time / n
  harness  ``measure(runner, warmup=0, min_runs=n, max_runs=n)``: its reported mean, and its wall time / n

and prints the median over rounds of the per-round ratios harness / bare − 1 (goal: ≤ 2 %), their interquartile
range, and the median absolute difference per call. Models:

  micro    a hand-made ONNX graph (embedding Gather + ReduceMean, ~10 µs a call): the worst case, where the
           per-call cost of Python dominates
  tiny     the tests' tiny BERT (4 layers, hidden 64), exported with export/onnx_export.py
  6x384    a random 6-layer, hidden-384 BERT (MiniLM-L6 sized; vocabulary of the tiny tokenizer)

    python benchmarks/harness_overhead.py                       # all three, batch 1 × 128, 1 thread, 41 rounds of 0.1 s
    python benchmarks/harness_overhead.py --models micro,tiny --threads 2 --rounds 81

torch/transformers are imported only to build and export the BERT models (not by the timed code).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ort_session import SessionRunner, make_feeds  # noqa: E402
from export.sessions import make_session  # noqa: E402
from bench.timing import measure  # noqa: E402


def micro_model(path: Path, vocab: int = 1000, hidden: int = 64) -> Path:
    """input_ids, attention_mask, token_type_ids → mean of the token embeddings [B, H]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    emb = numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "embeddings")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [helper.make_node("Gather", ["embeddings", "input_ids"], ["tokens"]),
             helper.make_node("ReduceMean", ["tokens", "axes"], ["pooled"], keepdims=0)]
    graph = helper.make_graph(nodes, "micro", inputs, [out], initializer=[emb, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)  # ORT 1.31 reads IR <= 13
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def bert_model(folder: Path, layers: int, hidden: int) -> Path:
    """A random BERT with the tests' tiny WordPiece tokenizer, exported to ``folder/onnx/model.onnx``."""
    from export.onnx_export import export_fp32
    from reference.tiny_models import make_tiny_bert

    make_tiny_bert(folder / "hf", layers=layers, hidden=hidden, heads=max(hidden // 32, 1), max_len=512)
    export_fp32(folder / "hf", folder / "onnx", task="feature-extraction", opset=18)
    return folder / "onnx" / "model.onnx"


def compare(path: Path, tokenizer, texts: list[str], *, batch: int, seq_len: int, threads: int, rounds: int,
            seconds: float) -> dict[str, float]:
    session = make_session(path, "cpu", threads)
    runner = SessionRunner(session, make_feeds(tokenizer, texts, batch, seq_len), "cpu")
    feeds = runner.feeds  # the very same arrays for both sides
    for _ in range(20):
        session.run(None, feeds)
    t0 = time.perf_counter()
    probe = 0
    while time.perf_counter() - t0 < 0.2:
        session.run(None, feeds)
        probe += 1
    n = max(10, int(seconds * probe / (time.perf_counter() - t0)))

    def bare() -> float:
        start = time.perf_counter()
        for _ in range(n):
            session.run(None, feeds)
        return (time.perf_counter() - start) / n

    def harness() -> tuple[float, float]:
        start = time.perf_counter()
        stats = measure(runner, warmup=0, min_time_s=0.0, min_runs=n, max_runs=n)
        return stats.mean_ms / 1000, (time.perf_counter() - start) / n

    reported, wall = [], []
    bare_times, reported_times, diffs = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            b = bare()
            h_mean, h_wall = harness()
        else:
            h_mean, h_wall = harness()
            b = bare()
        bare_times.append(b)
        reported_times.append(h_mean)
        reported.append(h_mean / b - 1)
        wall.append(h_wall / b - 1)
        diffs.append(h_mean - b)
    return {"calls_per_round": n, "bare_ms": 1000 * statistics.median(bare_times),
            "harness_ms": 1000 * statistics.median(reported_times),
            "overhead_reported": statistics.median(reported), "overhead_wall": statistics.median(wall),
            "overhead_us": 1e6 * statistics.median(diffs),
            "quartiles": tuple(statistics.quantiles(reported, n=4)[::2]) if len(reported) > 1 else (reported[0],) * 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="micro,tiny,6x384")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=41, help="many short rounds: the median of paired ratios shrugs off "
                    "load from other processes")
    ap.add_argument("--seconds", type=float, default=0.1, help="time per side per round (at least 10 calls)")
    args = ap.parse_args()

    from bench.tokenization import load_tokenizer

    print(f"batch {args.batch} × {args.seq_len}, {args.threads} thread(s), {args.rounds} rounds of ~{args.seconds:g} s "
          f"per side; overhead = harness / bare − 1, median over rounds")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from reference.tiny_models import SAMPLE_TEXT, make_tiny_bert

        tokenizer = load_tokenizer(make_tiny_bert(work / "tok", layers=1, hidden=32, heads=2), 512)
        for name in args.models.split(","):
            if name == "micro":
                path = micro_model(work / "micro.onnx")
            elif name == "tiny":
                path = bert_model(work / "tiny", 4, 64)
            else:
                layers, hidden = map(int, name.split("x"))
                path = bert_model(work / name, layers, hidden)
            r = compare(path, tokenizer, SAMPLE_TEXT, batch=args.batch, seq_len=args.seq_len, threads=args.threads,
                        rounds=args.rounds, seconds=args.seconds)
            lo, hi = r["quartiles"]
            print(f"{name:>7}: bare {r['bare_ms']:.4f} ms, harness mean {r['harness_ms']:.4f} ms "
                  f"({r['calls_per_round']} calls/round) → reported {100 * r['overhead_reported']:+.2f} % "
                  f"(IQR {100 * lo:+.2f} … {100 * hi:+.2f} %; {r['overhead_us']:+.2f} µs/call), "
                  f"wall incl. statistics {100 * r['overhead_wall']:+.2f} %")


if __name__ == "__main__":
    main()
