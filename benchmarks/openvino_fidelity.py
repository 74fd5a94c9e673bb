"""OpenVINO INT8 (NNCF) and bf16 fidelity on a real encoder, on a held-out set larger than the export's parity sample.

Quantizes an exported ``openvino-fp32`` IR with NNCF under several settings (the export's: transformer preset;
SmoothQuant at other strengths; the mixed preset), calibrating on lines drawn from a corpus, and compares each,
and the same IR compiled to bf16, with the PyTorch model on other lines of that corpus: mean and worst cosine of
mean-pooled embeddings, nearest-neighbour agreement overall and on the rows whose neighbour is clear.

    python benchmarks/openvino_fidelity.py RUN/export/openvino-fp32 RUN/student --corpus "$(compress assets path chatterbot)"
    python benchmarks/openvino_fidelity.py RUN/export/teacher/openvino-fp32 "$(compress assets path e5)" --corpus ...

``--score NAME=FOLDER`` scores IR folders the export made (``openvino-int8``, ``openvino-int8-qat``) on the same held-out
lines; to keep those lines unseen, export with ``--calib-corpus`` on text that does not contain them (QAT trains on
the calibration corpus).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed

from compress.corpus import expand_pattern, sample_lines  # noqa: E402
from compress.prepare_data import text_sources  # noqa: E402
from export.openvino_export import IR_FILE, OpenVINOSession, feed, input_names, require_openvino  # noqa: E402
from export.parity import compare, encode  # noqa: E402

KEYS = ("mean_cosine", "min_cosine", "nn_agreement", "nn_agreement_clear", "nn_clear_share", "samples")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ir", type=Path, help="an exported openvino-fp32 folder")
    ap.add_argument("reference", type=Path, help="the PyTorch model folder it was exported from")
    ap.add_argument("--corpus", required=True, help="text (file, folder or glob) for calibration and the held-out set")
    ap.add_argument("--calibration", type=int, default=300)
    ap.add_argument("--held-out", type=int, default=800)
    ap.add_argument("--settings", default="transformer,sq0.5,mixed",
                    help="NNCF settings to quantize with ('' for none): transformer (the export's), mixed, sqALPHA "
                         "(SmoothQuant strength), keep:REGEX (matmuls whose names match stay in float)")
    ap.add_argument("--score", action="append", default=[], metavar="NAME=FOLDER", help="also score this exported IR")
    ap.add_argument("--json")
    args = ap.parse_args()

    ov = require_openvino(with_nncf=True)
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from transformers import AutoModel, AutoTokenizer

    logging.getLogger("nncf").setLevel(logging.ERROR)
    paths = [t for p in expand_pattern(args.corpus) for t in text_sources(p)]
    lines = sample_lines(paths, args.calibration + args.held_out, seed=0)
    random.Random(0).shuffle(lines)
    calib_lines, held_out = lines[: args.calibration], lines[args.calibration :]
    tokenizer = AutoTokenizer.from_pretrained(args.reference)
    model = AutoModel.from_pretrained(args.reference).eval()
    calib, batches = encode(tokenizer, calib_lines), encode(tokenizer, held_out)
    core = ov.Core()
    names = input_names(args.ir)
    options = {"transformer": {}, "mixed": {"preset": nncf.QuantizationPreset.MIXED}}
    settings = [name for name in args.settings.split(",") if name]
    for name in settings:
        if name.startswith("keep:"):  # the matmuls whose names match this regex stay in float (NNCF's ignored scope)
            options[name] = {"ignored_scope": nncf.IgnoredScope(patterns=[f".*(?:{name[5:]}).*"], validate=False)}
        if name.startswith("sq"):
            alpha = AdvancedSmoothQuantParameters(matmul=float(name[2:]))
            options[name] = {"advanced_parameters": AdvancedQuantizationParameters(smooth_quant_alphas=alpha)}
    results = {"setup": {"ir": str(args.ir), "reference": str(args.reference), "calibration": len(calib_lines),
                         "held_out": len(held_out), "openvino": ov.__version__, "nncf": nncf.__version__}}
    work = Path(args.json).with_suffix("") if args.json else None
    for name in settings:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
            quantized = nncf.quantize(core.read_model(str(args.ir / IR_FILE)), nncf.Dataset(calib, lambda b: feed(names, b)),
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib_lines), **options[name])
        folder = (work or Path("/tmp")) / ("openvino-int8-" + "".join(c if c.isalnum() else "_" for c in name))
        folder.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, str(folder / IR_FILE), compress_to_fp16=False)
        report = compare(model, OpenVINOSession(folder, "fp32"), batches).as_dict()
        results[f"int8-{name}"] = {k: report.get(k) for k in KEYS} | {"quantize_s": round(time.perf_counter() - t0, 1)}
        print(f"int8 {name:>24}: " + json.dumps(results[f"int8-{name}"]), flush=True)
    for spec in args.score:
        name, folder = spec.split("=", 1)
        report = compare(model, OpenVINOSession(Path(folder), "fp32"), batches).as_dict()
        results[name] = {k: report.get(k) for k in KEYS} | {"folder": folder}
        print(f"{name:>17}: " + json.dumps(results[name]), flush=True)
    report = compare(model, OpenVINOSession(args.ir, "bf16"), batches).as_dict()
    results["bf16"] = {k: report.get(k) for k in KEYS}
    print(f"{'bf16':>17}: " + json.dumps(results["bf16"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
