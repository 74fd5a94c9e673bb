"""INT8 and bf16 against FP32 on ONNX Runtime and OpenVINO (CPU), and this project's export against optimum's.

For each model shape (random BERT weights: speed does not depend on their values), it builds:
  fp32             our FP32 export (torch.onnx.export, checked against PyTorch; the portable graph)
  fp32-fused       + our CPU fusion (export.fusion: Attention only)
  int8             `compress export --int8`: ORT dynamic INT8 (per-channel signed weights) of fp32-fused
  int8-unfused     the same quantization of the unfused graph (`fuse=false`)
  int8-ort-fused   dynamic INT8 of ONNX Runtime's full fusion set (with SkipLayerNormalization)
  int8-static      static QDQ INT8 (min-max calibration on real-looking text)
  optimum-fp32     `optimum-cli export onnx` + ORTOptimizer O2
  optimum-int8     ORTQuantizer with AutoQuantizationConfig.avx512_vnni (dynamic) on the plain export
                   (on the O2 graph it fails with ORT 1.31)
  openvino-fp32    `compress export --runtime openvino`: the FP32 graph as OpenVINO IR, compiled to f32
  openvino-bf16    the same IR compiled to bf16 (CPUs with AVX-512 BF16 / AMX)
  openvino-int8    `--runtime openvino --int8`: NNCF static INT8 (transformer preset) calibrated on the text
  openvino-int8-qat  what `--qat --runtime openvino` ships: NNCF's quantizers on the PyTorch model, converted by
                   ov.convert_model (export.openvino_qat), here without the retraining: steps change values, not
                   the graph, and speed does not depend on values
(the openvino variants need the openvino extra; --no-openvino leaves them out)
Our variants run with export.fusion's CPU session options (SkipLayerNorm fusion off, as `compress bench` runs
them); optimum's and int8-ort-fused with ONNX Runtime's defaults, as their users would. Every variant is timed
in alternating rounds (noise hits all alike) at each batch size × length, with a fixed thread count. Prints
latency (median over rounds) and the ratios a reader needs (median over rounds of the within-round ratio).

    python benchmarks/int8_speed.py                      # 12×384 and 6×384, batch 1 and 8, length 128, 2 threads
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast


def build_model(folder: Path, layers: int, hidden: int, vocab_file: Path) -> Path:
    """A random BERT of the given shape with a real WordPiece vocabulary, saved as an HF folder."""
    torch.manual_seed(0)
    config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 32,
                        intermediate_size=4 * hidden)
    BertModel(config).save_pretrained(folder)
    shutil.copy(vocab_file, folder / "vocab.txt")  # transformers 4 and 5 both build the tokenizer from it
    BertTokenizerFast.from_pretrained(folder).save_pretrained(folder)
    return folder


def sentences(vocab_file: Path, n: int = 400, seed: int = 0) -> list[str]:
    """``n`` lines of 8–40 whole words from the vocabulary: text for the export's calibration and parity checks."""
    words = [w for w in vocab_file.read_text(encoding="utf-8").split() if w.isalpha() and not w.startswith("[")]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, int(rng.integers(8, 40)))) for _ in range(n)]


def ours(model_dir: Path, work: Path, hidden: int, lines: list[str],
         openvino: bool = False) -> tuple[dict[str, Path], dict]:
    """What `compress export --int8` makes of a model folder, through its own code (export.stage.export_model:
    fp32, and int8 from the attention-fused graph with reduce_range and quantize_embeddings resolved as the
    export resolves them), plus fp32-fused, the graph INT8 is made from. Returns (paths, the int8 record)."""
    from compress.config import ExportConfig
    from export.fusion import fuse_for_cpu
    from export.stage import export_model

    runtimes = ["onnxruntime", "openvino"] if openvino else ["onnxruntime"]
    report, _ = export_model(model_dir, work / "export", ExportConfig(int8=True, runtimes=runtimes), lines)
    fp32 = work / "export" / "fp32" / "model.onnx"
    fuse_for_cpu(fp32, work / "fp32-fused.onnx", model_type="bert", num_heads=hidden // 32, hidden_size=hidden)
    paths = {"fp32": fp32, "fp32-fused": work / "fp32-fused.onnx", "int8": work / "export" / "int8" / "model.onnx"}
    for name, record in report.variants.items():
        if record.runtime == "openvino":  # a folder plus the precision it is compiled to
            paths[name] = work / "export" / record.folder
    if openvino:
        paths["openvino-int8-qat"] = openvino_qat_graph(model_dir, work, lines)
    return paths, report.variants["int8"].model_dump(exclude_none=True)


def openvino_qat_graph(model_dir: Path, work: Path, lines: list[str]) -> Path:
    """The IR `--qat --runtime openvino` ships, before retraining: export.openvino_qat's quantizers and conversion."""
    from transformers import AutoTokenizer

    from export.openvino_export import input_names
    from export.openvino_qat import load_for_training, quantize_for_training, save_ir
    from export.parity import encode

    ir_fp32 = work / "export" / "openvino-fp32"
    names, calibration = input_names(ir_fp32), encode(AutoTokenizer.from_pretrained(model_dir), lines[:256])
    model = quantize_for_training(load_for_training(model_dir), names, calibration)
    return save_ir(model, names, calibration[0], work / "openvino-int8-qat", ir_fp32)


def variants(model_dir: Path, work: Path, layers: int, hidden: int, calib: list[dict], lines: list[str],
             openvino: bool = False) -> dict[str, Path]:
    from onnxruntime.transformers.optimizer import optimize_model
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    from export.quantize import quantize_dynamic_int8, quantize_static_int8

    out, shipped = ours(model_dir, work, hidden, lines, openvino)
    fp32 = out["fp32"]
    # The alternatives use the settings the export chose for this CPU and model, so only the graph differs.
    same = {"reduce_range": shipped["reduce_range"], "quantize_embeddings": shipped["quantized_embeddings"]}
    out["int8-unfused"] = work / "int8-unfused.onnx"
    quantize_dynamic_int8(fp32, out["int8-unfused"], **same)
    ort_fused = work / "ort-fused.onnx"
    optimize_model(str(fp32), model_type="bert", num_heads=hidden // 32, hidden_size=hidden).save_model_to_file(str(ort_fused))
    out["int8-ort-fused"] = work / "int8-ort-fused.onnx"
    quantize_dynamic_int8(ort_fused, out["int8-ort-fused"], **same)
    out["int8-static"] = work / "int8-static.onnx"
    quantize_static_int8(fp32, out["int8-static"], calib, **same)

    optimizer = ORTOptimizer.from_pretrained(work / "export" / "fp32")
    optimizer.optimize(save_dir=work / "optimum-o2", optimization_config=AutoOptimizationConfig.O2())
    out["optimum-fp32"] = next((work / "optimum-o2").glob("*.onnx"))
    # ORTQuantizer fails on the O2 graph with ORT 1.31 ("Unable to find data type for ..."): optimum's INT8
    # path therefore starts from its plain export, as optimum's own quantization examples do.
    quantizer = ORTQuantizer.from_pretrained(work / "export" / "fp32", file_name="model.onnx")
    quantizer.quantize(save_dir=work / "optimum-int8", quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False))
    out["optimum-int8"] = next((work / "optimum-int8").glob("*.onnx"))
    return out


ORT_DEFAULTS = {"int8-ort-fused", "optimum-fp32", "optimum-int8"}  # run as their own users run them


def session(model: Path | bytes, threads: int, ours: bool = True) -> ort.InferenceSession:
    """A CPU session on ``model`` with ``threads`` intra-op threads: the product's (export.sessions.make_session) for
    our variants; ONNX Runtime's defaults for optimum's, as their users run them, and for serialized graphs (bytes,
    the ceiling's part graphs)."""
    from export.fusion import cpu_session_options
    from export.sessions import make_session

    if ours and not isinstance(model, bytes):
        return make_session(model, "cpu", threads)
    opts = cpu_session_options() if ours else ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"])


def openvino_session(folder: Path, name: str, threads: int):
    """The product's OpenVINO session (export.openvino_export) at the variant's compile precision."""
    from export.openvino_export import OpenVINOSession

    return OpenVINOSession(folder, "bf16" if name == "openvino-bf16" else "fp32", threads)


def time_rounds(calls: dict[str, Callable[[], object]], rounds: int, min_time: float, *,
                warmup_time: float = 0.0, warmup_calls: int = 1) -> dict[str, list[float]]:
    """Seconds per call for each named callable, one figure per round (each runs ≥ ``min_time`` and ≥ 3 calls);
    the callables alternate within a round, so the machine's drift hits all alike. Each is first warmed up for
    ``warmup_time`` seconds and at least ``warmup_calls`` calls."""
    for call in calls.values():
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < warmup_time or n < warmup_calls:
            call()
            n += 1
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < min_time or n < 3:
                call()
                n += 1
            times[name].append((time.perf_counter() - t0) / n)
    return times


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of the within-round ratio ``slow / fast``: the machine's slow drift cancels."""
    return statistics.median(a / b for a, b in zip(slow, fast))


def feeds(sess, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = {i.name for i in sess.get_inputs()}
    return {k: v for k, v in batch.items() if k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="12x384,6x384")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per variant per round")
    ap.add_argument("--no-openvino", action="store_true", help="leave out the OpenVINO variants")
    ap.add_argument("--json")
    args = ap.parse_args()

    from compress.assets.minilm_teacher import english_teacher_path

    vocab = Path(english_teacher_path()) / "vocab.txt"
    rng = np.random.default_rng(0)
    results = {"setup": vars(args) | {"onnxruntime": ort.__version__}, "shapes": {}}
    for shape in args.shapes.split(","):
        layers, hidden = map(int, shape.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model_dir = build_model(work / "model", layers, hidden, vocab)
            calib = []
            for _ in range(8):
                ids = rng.integers(1000, 30000, size=(8, args.seq_len))
                calib.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
            paths = variants(model_dir, work, layers, hidden, calib, sentences(vocab), openvino=not args.no_openvino)
            sessions = {name: openvino_session(p, name, args.threads) if name.startswith("openvino-")
                        else session(p, args.threads, ours=name not in ORT_DEFAULTS) for name, p in paths.items()}
            shape_result = {}
            for bs in map(int, args.batch_sizes.split(",")):
                ids = rng.integers(1000, 30000, size=(bs, args.seq_len)).astype(np.int64)
                batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
                calls = {name: (lambda s=sess, f=feeds(sess, batch): s.request.infer(f)) if name.startswith("openvino-")
                         else (lambda s=sess, f=feeds(sess, batch): s.run(None, f)) for name, sess in sessions.items()}
                times = time_rounds(calls, args.rounds, args.min_time)
                med = {name: statistics.median(v) * 1000 for name, v in times.items()}

                def ratio(slow: str, fast: str) -> float:
                    return paired_ratio(times[slow], times[fast])

                shape_result[f"batch{bs}"] = med
                shape_result[f"batch{bs}_vs_fp32"] = {name: ratio("fp32", name) for name in times}
                print(f"\n{shape}  batch {bs} × {args.seq_len}, {args.threads} threads: median ms per call")
                for name, ms in med.items():
                    print(f"  {name:>17}: {ms:8.2f} ms   {ratio('fp32', name):5.2f}× vs fp32")
                print(f"  ours int8 vs fp32-fused: {ratio('fp32-fused', 'int8'):.2f}×; "
                      f"vs int8-unfused: {ratio('int8-unfused', 'int8'):.2f}×; "
                      f"vs optimum-int8: {ratio('optimum-int8', 'int8'):.2f}×; "
                      f"ours fp32-fused vs optimum-fp32: {ratio('optimum-fp32', 'fp32-fused'):.2f}×")
                if "openvino-int8" in times:
                    print(f"  openvino-int8-qat vs openvino-int8: {ratio('openvino-int8', 'openvino-int8-qat'):.2f}×")
                    print(f"  openvino-int8 vs ours int8: {ratio('int8', 'openvino-int8'):.2f}×; openvino-fp32 vs fp32: "
                          f"{ratio('fp32', 'openvino-fp32'):.2f}×" + (f"; openvino-bf16 vs fp32: {ratio('fp32', 'openvino-bf16'):.2f}×"
                                                                      if "openvino-bf16" in times else ""))
            shape_result["size_mib"] = {name: (sum(f.stat().st_size for f in p.glob("openvino_model.*")) if p.is_dir()
                                               else p.stat().st_size) / 2**20 for name, p in paths.items()}
            results["shapes"][shape] = shape_result
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
