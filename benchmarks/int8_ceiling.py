"""How fast INT8 can get on ONNX Runtime's CPU kernels: the speed-up ceiling against FP32, from measured parts.

An encoder layer's work splits into the four projection GEMMs (Q/K/V, attention output, FFN in, FFN out),
the attention core (softmax(QKᵀ/√d)·V, per head) and the rest (LayerNorm, GELU, residual adds). INT8 can
only speed up the projections: ONNX Runtime's integer kernel for activation × activation products is slower
than FP32 at the attention core's shapes (measured below), so ``QAttention`` keeps the core in FP32. The
export's INT8 graph runs, per layer, one ``QAttention`` and three ``DynamicQuantizeMatMul``; timed alone at the
model's shapes they give

    bound = layers × (QAttention + 3 × DynamicQuantizeMatMul)

the INT8 graph's time if everything else (LayerNorm, GELU, residual adds, embeddings) were free, and
``FP32 end to end / bound`` is the ceiling on what INT8 can gain with these kernels.
This script times, in alternating rounds (this VM drifts; ratios are medians of within-round ratios):

  * each projection at the model's shape as FP32 ``MatMul``, as ``DynamicQuantizeMatMul`` (what the export's
    INT8 graph runs: quantize the activation, integer GEMM, dequantize) and as bare ``MatMulInteger`` on an
    already-quantized input (the integer GEMM alone: the CPU's raw INT8/FP32 ratio);
  * one layer's self-attention as the INT8 graph runs it (``DynamicQuantizeLinear`` + ``QAttention``);
  * the attention core alone in FP32 (``MultiHeadAttention`` and plain ops), and its QKᵀ product as FP32
    ``MatMul`` vs ``DynamicQuantizeLinear`` + ``MatMulIntegerToFloat`` (why the core stays FP32);
  * the FP32 export and `compress export --int8`'s INT8 graph end to end (random BERT weights).

    python benchmarks/int8_ceiling.py                    # 12×384 and 6×384, batch 1 and 8, length 128, 2 threads
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed

from benchmarks.int8_speed import build_model, feeds, ours, paired_ratio, sentences, session, time_rounds  # noqa: E402

OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]


def _model(nodes, inputs, initializers=()) -> bytes:
    """A one-output graph (output "y") as serialized ONNX; IR version 9, which ONNX Runtime 1.31 accepts."""
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              list(initializers))
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=9).SerializeToString()


def _input(name: str, shape: list[int], dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def projection_graphs(m: int, k: int, n: int, rng) -> dict[str, tuple[bytes, dict]]:
    """The projection x[m, k] @ W[k, n] three ways, with their feeds: fp32, int8 (dynamic), raw integer GEMM."""
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)
    w8 = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    x = rng.standard_normal((m, k)).astype(np.float32)
    fp32 = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [_input("x", [m, k])], [numpy_helper.from_array(w, "W")])
    dynamic = _model([helper.make_node("DynamicQuantizeMatMul", ["x", "W8", "scale", "zero"], ["y"], domain="com.microsoft")],
                     [_input("x", [m, k])], [numpy_helper.from_array(w8, "W8"), numpy_helper.from_array(scale, "scale"),
                                             numpy_helper.from_array(np.zeros(n, np.int8), "zero")])
    # The integer GEMM alone: u8 activations (as ORT's dynamic scheme produces them) × s8 weights → int32.
    raw = _model([helper.make_node("MatMulInteger", ["x8", "W8"], ["y32"]),
                  helper.make_node("Cast", ["y32"], ["y"], to=TensorProto.FLOAT)],
                 [_input("x8", [m, k], TensorProto.UINT8)], [numpy_helper.from_array(w8, "W8")])
    x8 = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    return {"fp32": (fp32, {"x": x}), "int8": (dynamic, {"x": x}), "integer-gemm": (raw, {"x8": x8})}


def attention_graphs(batch: int, seq: int, heads: int, head_dim: int, rng) -> dict[str, tuple[bytes, dict]]:
    """The attention core in FP32 (MultiHeadAttention, and as plain ops) and its QKᵀ product in FP32 and INT8."""
    hidden = heads * head_dim
    qkv = {name: rng.standard_normal((batch, seq, hidden)).astype(np.float32) for name in "qkv"}
    inputs = [_input(name, [batch, seq, hidden]) for name in "qkv"]
    core = _model([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft", num_heads=heads)], inputs)
    # The same core as plain ONNX ops (as the unfused FP32 export runs it); sometimes faster than the fused op.
    split = numpy_helper.from_array(np.array([batch, seq, heads, head_dim], np.int64), "split")
    merge = numpy_helper.from_array(np.array([batch, seq, hidden], np.int64), "merge")
    scale = numpy_helper.from_array(np.array(head_dim ** -0.5, np.float32), "scale")
    node = helper.make_node
    plain = _model([node("Reshape", ["q", "split"], ["q4"]), node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
                    node("Reshape", ["k", "split"], ["k4"]), node("Transpose", ["k4"], ["kh"], perm=[0, 2, 3, 1]),
                    node("Reshape", ["v", "split"], ["v4"]), node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
                    node("MatMul", ["qh", "kh"], ["s"]), node("Mul", ["s", "scale"], ["s1"]),
                    node("Softmax", ["s1"], ["p"], axis=-1), node("MatMul", ["p", "vh"], ["c"]),
                    node("Transpose", ["c"], ["ct"], perm=[0, 2, 1, 3]), node("Reshape", ["ct", "merge"], ["y"])],
                   inputs, [split, merge, scale])
    a, b = [batch, heads, seq, head_dim], [batch, heads, head_dim, seq]
    ab = {"a": rng.standard_normal(a).astype(np.float32), "b": rng.standard_normal(b).astype(np.float32)}
    qk_fp32 = _model([helper.make_node("MatMul", ["a", "b"], ["y"])], [_input("a", a), _input("b", b)])
    qk_int8 = _model([helper.make_node("DynamicQuantizeLinear", ["a"], ["a8", "as", "az"]),
                      helper.make_node("DynamicQuantizeLinear", ["b"], ["b8", "bs", "bz"]),
                      helper.make_node("MatMulIntegerToFloat", ["a8", "b8", "as", "bs", "az", "bz"], ["y"], domain="com.microsoft")],
                     [_input("a", a), _input("b", b)])
    return {"core-fp32": (core, qkv), "core-plain-fp32": (plain, qkv), "qk-fp32": (qk_fp32, ab), "qk-int8": (qk_int8, ab)}


def qattention_graph(batch: int, seq: int, heads: int, head_dim: int, rng) -> tuple[bytes, dict]:
    """One layer's self-attention as the export's INT8 graph runs it: ``DynamicQuantizeLinear`` on the input,
    then ``QAttention`` (INT8 Q/K/V projection with per-column scales, FP32 attention core)."""
    hidden = heads * head_dim
    w = (rng.standard_normal((hidden, 3 * hidden)) * 0.05).astype(np.float32)
    scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)
    weights = [numpy_helper.from_array(np.clip(np.round(w / scale), -127, 127).astype(np.int8), "W8"),
               numpy_helper.from_array(scale, "wscale"), numpy_helper.from_array(np.zeros(3 * hidden, np.int8), "wzero"),
               numpy_helper.from_array((rng.standard_normal(3 * hidden) * 0.02).astype(np.float32), "bias")]
    model = _model([helper.make_node("DynamicQuantizeLinear", ["x"], ["x8", "xscale", "xzero"]),
                    helper.make_node("QAttention", ["x8", "W8", "bias", "xscale", "wscale", "mask", "xzero", "wzero"], ["y"],
                                     domain="com.microsoft", num_heads=heads)],
                   [_input("x", [batch, seq, hidden]), _input("mask", [batch], TensorProto.INT32)], weights)
    return model, {"x": rng.standard_normal((batch, seq, hidden)).astype(np.float32),
                   "mask": np.full(batch, seq, np.int32)}


def build_end_to_end(work: Path, layers: int, hidden: int) -> dict[str, Path]:
    """The FP32 export and the export's INT8 graph (attention-fused, dynamic per-channel) of a random BERT."""
    from compress.assets.minilm_teacher import english_teacher_path

    vocab = Path(english_teacher_path()) / "vocab.txt"
    model_dir = build_model(work / "model", layers, hidden, vocab)
    graphs, _ = ours(model_dir, work, hidden, sentences(vocab))
    return {"fp32": graphs["fp32"], "int8": graphs["int8"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="12x384,6x384", help="layers×hidden; heads = hidden / 32, FFN = 4 × hidden")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per callable per round")
    ap.add_argument("--json")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    results = {"setup": vars(args) | {"onnxruntime": ort.__version__}, "rows": []}
    for shape in args.shapes.split(","):
        layers, hidden = map(int, shape.split("x"))
        heads, projections = hidden // 32, {"qkv": (hidden, 3 * hidden), "attn-out": (hidden, hidden),
                                            "ffn-in": (hidden, 4 * hidden), "ffn-out": (4 * hidden, hidden)}
        with tempfile.TemporaryDirectory() as tmp:
            models = {name: session(path, args.threads) for name, path in build_end_to_end(Path(tmp), layers, hidden).items()}
            for bs in map(int, args.batch_sizes.split(",")):
                ids = rng.integers(1000, 30000, size=(bs, args.seq_len)).astype(np.int64)
                batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
                calls = {f"model-{name}": (lambda s=s, f=feeds(s, batch): s.run(None, f)) for name, s in models.items()}
                parts = {f"{proj}-{kind}": graph for proj, (k, n) in projections.items()
                         for kind, graph in projection_graphs(bs * args.seq_len, k, n, rng).items()}
                parts |= attention_graphs(bs, args.seq_len, heads, 32, rng)
                parts["attention-int8"] = qattention_graph(bs, args.seq_len, heads, 32, rng)
                for name, (model, feed) in parts.items():
                    calls[name] = lambda s=session(model, args.threads), f=feed: s.run(None, f)
                # warm-up: a model's first calls allocate its arena and are several times slower
                t = time_rounds(calls, args.rounds, args.min_time, warmup_time=args.min_time, warmup_calls=5)
                per_round = range(args.rounds)
                # The INT8 graph's own matmul-bearing ops (QAttention and three DynamicQuantizeMatMul) per layer.
                bound = [layers * (t["attention-int8"][r] + sum(t[f"{p}-int8"][r] for p in projections if p != "qkv"))
                         for r in per_round]
                gemm_fp32 = [sum(t[f"{p}-fp32"][r] for p in projections) for r in per_round]
                gemm_int8 = [sum(t[f"{p}-int8"][r] for p in projections) for r in per_round]
                gemm_raw = [sum(t[f"{p}-integer-gemm"][r] for p in projections) for r in per_round]
                row = {"shape": shape, "batch": bs,
                       "ms": {name: statistics.median(v) * 1000 for name, v in t.items()},
                       "bound_ms": statistics.median(bound) * 1000,
                       "ceiling_vs_fp32": paired_ratio(t["model-fp32"], bound),
                       "int8_vs_fp32": paired_ratio(t["model-fp32"], t["model-int8"]),
                       "share_of_ceiling": paired_ratio(bound, t["model-int8"]),
                       "projections_int8_vs_fp32": paired_ratio(gemm_fp32, gemm_int8),
                       "projections_integer_gemm_vs_fp32": paired_ratio(gemm_fp32, gemm_raw),
                       "qk_int8_vs_fp32": paired_ratio(t["qk-fp32"], t["qk-int8"])}
                results["rows"].append(row)
                ms = row["ms"]
                print(f"\n{shape}  batch {bs} × {args.seq_len}, {args.threads} threads (µs per call, one layer's parts)")
                for p in projections:
                    print(f"  {p:>9}: fp32 {ms[f'{p}-fp32'] * 1e3:8.1f}   int8 (dynamic) {ms[f'{p}-int8'] * 1e3:8.1f} "
                          f"({paired_ratio(t[f'{p}-fp32'], t[f'{p}-int8']):.2f}×)   integer GEMM alone "
                          f"{ms[f'{p}-integer-gemm'] * 1e3:8.1f} ({paired_ratio(t[f'{p}-fp32'], t[f'{p}-integer-gemm']):.2f}×)")
                print(f"  self-attention as the INT8 graph runs it (QAttention: int8 Q/K/V, fp32 core) "
                      f"{ms['attention-int8'] * 1e3:.1f}")
                print(f"  attention core fp32 {ms['core-fp32'] * 1e3:.1f} (plain ops {ms['core-plain-fp32'] * 1e3:.1f});  "
                      f"its QKᵀ: fp32 {ms['qk-fp32'] * 1e3:.1f}, int8 {ms['qk-int8'] * 1e3:.1f} ({row['qk_int8_vs_fp32']:.2f}×)")
                print(f"  all projections: int8 {row['projections_int8_vs_fp32']:.2f}× fp32 "
                      f"(integer GEMM alone {row['projections_integer_gemm_vs_fp32']:.2f}×)")
                print(f"  end to end: fp32 {ms['model-fp32']:.2f} ms, int8 {ms['model-int8']:.2f} ms "
                      f"({row['int8_vs_fp32']:.2f}×); INT8 bound {row['bound_ms']:.2f} ms → ceiling "
                      f"{row['ceiling_vs_fp32']:.2f}× fp32; the export's INT8 reaches {row['share_of_ceiling']:.0%} of it")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
