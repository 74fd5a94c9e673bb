"""How faithful are INT8 variants of a real encoder? Mean-pooled embeddings against PyTorch FP32.

Exports MODEL (any HF folder) to FP32 ONNX, quantizes it (ours: dynamic per-channel on the CPU-fused graph as
`compress export --int8` does, the same on the unfused graph, and static QDQ; optimum's ORTQuantizer with the
avx512_vnni dynamic config; with the openvino extra, OpenVINO's FP32 IR, its bf16 compile and NNCF's static INT8 as
`compress export --runtime openvino` makes them), and reports for N real sentences: mean and worst cosine to PyTorch FP32 and
nearest-neighbour agreement — the figures a search index would notice. A last row runs the PyTorch model in
bfloat16: how much agreement a near-lossless format (mean cosine ≈ 0.9999) keeps on the same sentences, i.e.
how fragile the sentences' nearest neighbours are.

    python benchmarks/int8_fidelity.py "$(compress assets path minilm)" --corpus "$(compress assets path chatterbot-en)"
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from transformers import AutoModel, AutoTokenizer

from compress.corpus import expand_pattern, read_corpus
from export.isa import cpu_features, needs_reduced_range
from export.fusion import fuse_for_cpu
from export.onnx_export import export_fp32
from export.parity import compare, encode
from export.quantize import quantize_dynamic_int8, quantize_static_int8
from export.sessions import make_session


class _TorchBf16:
    """The PyTorch model in bfloat16 behind the two methods :func:`export.parity.compare` calls on a session."""

    def __init__(self, model_dir: str):
        import torch

        self.torch, self.model = torch, AutoModel.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.model.config.type_vocab_size > 1 else [])
        self.inputs = [argparse.Namespace(name=n) for n in names]

    def get_inputs(self):
        return self.inputs

    def run(self, names, feed):
        with self.torch.no_grad():
            out = self.model(**{k: self.torch.from_numpy(v) for k, v in feed.items()})
        return [getattr(out, name).float().numpy() for name in names]


def qat_variant(args, lines: list[str], held_out: set[str], work: Path, reduce: bool, lr: float) -> Path:
    """Retrain a copy of MODEL fake-quantized against the FP32 original; export and quantize it (dynamic)."""
    from compress.architectures import arch_spec
    from compress.config import TrainConfig
    from export.qat import fake_quantized, retrain

    student, reference = AutoModel.from_pretrained(args.model), AutoModel.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    spec = arch_spec(student.config.model_type)
    cfg = TrainConfig(steps=args.qat_steps, batch_size=32, lr=lr, weight_decay=0.0, warmup_steps=0,
                      checkpoint_every=10**9, log_every=10, device="cpu")
    with fake_quantized(student, spec, reduce_range=reduce):
        retrain(student, reference, spec=spec, reference_spec=spec, reference_layer=student.config.num_hidden_layers - 1,
                tokenizer=tokenizer, lines=[l for l in lines if l not in held_out], relation_heads=48, cfg=cfg,
                out_dir=work / "train", output_weight=1.0, embedding_weight=1.0, max_length=64)
    student.eval().save_pretrained(work / "student")
    tokenizer.save_pretrained(work / "student")
    fp32 = export_fp32(work / "student", work / "fp32", task="feature-extraction", opset=18) / "model.onnx"
    c = student.config
    fuse_for_cpu(fp32, work / "fused.onnx", model_type=c.model_type, num_heads=c.num_attention_heads, hidden_size=c.hidden_size)
    quantize_dynamic_int8(work / "fused.onnx", work / "int8.onnx", reduce_range=reduce, quantize_embeddings=False)
    return work / "int8.onnx"


def openvino_qat_variant(args, lines: list[str], held_out: set[str], work: Path, lr: float, calibration) -> Path:
    """What `compress export --qat --runtime openvino` does (export.openvino_qat): NNCF's quantizers on a copy of
    MODEL, retrained against the FP32 original with the relation loss, converted to IR with its trained ranges."""
    from compress.architectures import arch_spec
    from compress.config import TrainConfig
    from export.openvino_export import input_names
    from export.openvino_qat import load_for_training, quantize_for_training, save_ir
    from export.qat import retrain

    names = input_names(work.parent / "openvino-fp32")
    reference = AutoModel.from_pretrained(args.model).eval()
    student = quantize_for_training(load_for_training(args.model), names, calibration)
    spec = arch_spec(student.config.model_type)
    cfg = TrainConfig(steps=args.qat_steps, batch_size=32, lr=lr, weight_decay=0.0, warmup_steps=0,
                      checkpoint_every=10**9, log_every=10, device="cpu")
    retrain(student, reference, spec=spec, reference_spec=spec, reference_layer=student.config.num_hidden_layers - 1,
            tokenizer=AutoTokenizer.from_pretrained(args.model), lines=[l for l in lines if l not in held_out],
            relation_heads=48, cfg=cfg, out_dir=work / "train", output_weight=1.0, embedding_weight=1.0, max_length=64)
    return save_ir(student.eval(), names, calibration[0], work / "ir", work.parent / "openvino-fp32")


def openvino_sessions(work: Path, calibration) -> dict:
    """The export's OpenVINO variants of ``work/fp32`` (:mod:`export.openvino_export`): fp32, bf16 (where the CPU
    has it) and NNCF INT8 calibrated on ``calibration``."""
    from export.openvino_export import OpenVINOSession, convert_to_ir, cpu_has_bf16, quantize_int8

    ir = convert_to_ir(work / "fp32", work / "openvino-fp32")
    sessions = {"openvino-fp32": OpenVINOSession(ir, "fp32")}
    if cpu_has_bf16():
        sessions["openvino-bf16"] = OpenVINOSession(ir, "bf16")
    sessions["openvino-int8"] = OpenVINOSession(quantize_int8(ir, work / "openvino-int8", calibration), "fp32")
    return sessions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--qat-steps", type=int, default=0, help="also quantization-aware retraining (variant int8-qat)")
    ap.add_argument("--qat-lr", type=float, nargs="*", default=[2e-6], help="one int8-qat variant per learning rate")
    ap.add_argument("--openvino-qat-lr", type=float, nargs="*", default=[2e-5],
                    help="with --qat-steps: one openvino-int8-qat variant per learning rate (the export's default 2e-5)")
    ap.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO variants (no openvino extra)")
    ap.add_argument("--json")
    args = ap.parse_args()

    lines = [l for p in expand_pattern(args.corpus) for l in read_corpus(p).lines]
    order = np.random.default_rng(0).permutation(len(lines))
    test = [lines[i] for i in order[: args.sentences]]
    calib = [lines[i] for i in order[args.sentences : args.sentences + args.calib]]
    model, tokenizer = AutoModel.from_pretrained(args.model).eval(), AutoTokenizer.from_pretrained(args.model)
    batches, reduce = encode(tokenizer, test), needs_reduced_range(cpu_features())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = export_fp32(Path(args.model), work / "fp32", task="feature-extraction", opset=18) / "model.onnx"
        paths = {"fp32": fp32, "int8": work / "int8.onnx", "int8-unfused": work / "dyn.onnx", "int8-static": work / "static.onnx"}
        config = model.config
        fuse_for_cpu(fp32, work / "fused.onnx", model_type=config.model_type, num_heads=config.num_attention_heads,
                     hidden_size=config.hidden_size)
        quantize_dynamic_int8(work / "fused.onnx", paths["int8"], reduce_range=reduce, quantize_embeddings=False)
        quantize_dynamic_int8(fp32, paths["int8-unfused"], reduce_range=reduce, quantize_embeddings=False)
        quantize_static_int8(fp32, paths["int8-static"], encode(tokenizer, calib), reduce_range=reduce, quantize_embeddings=False)
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        ORTQuantizer.from_pretrained(work / "fp32").quantize(
            save_dir=work / "optimum", quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False))
        paths["optimum-int8"] = next((work / "optimum").glob("*.onnx"))
        for lr in args.qat_lr if args.qat_steps else []:
            paths[f"int8-qat-lr{lr:g}"] = qat_variant(args, lines, set(test), work / f"qat{lr:g}", reduce, lr)
        sessions = {name: make_session(path, "cpu", None) for name, path in paths.items()}  # the product's sessions
        if not args.no_openvino:
            from export.openvino_export import OpenVINOSession

            sessions |= openvino_sessions(work, encode(tokenizer, calib))
            for lr in args.openvino_qat_lr if args.qat_steps else []:
                folder = openvino_qat_variant(args, lines, set(test), work / f"ovqat{lr:g}", lr, encode(tokenizer, calib))
                sessions[f"openvino-int8-qat-lr{lr:g}"] = OpenVINOSession(folder, "fp32")
        sessions["pytorch-bf16"] = _TorchBf16(args.model)
        for name, session in sessions.items():
            r = compare(model, session, batches)
            results[name] = r.as_dict()
            print(f"{name:>24}: mean cosine {r.mean_cosine:.5f}  worst {r.min_cosine:.4f}  "
                  f"nearest-neighbour agreement {100 * r.nn_agreement:.1f}%, where the neighbour is clear "
                  f"{100 * r.nn_agreement_clear:.1f}%  ({r.samples} sentences, {100 * r.nn_clear_share:.0f}% clear)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
