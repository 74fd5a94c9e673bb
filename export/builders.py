"""How each export variant is built: one function per row of :data:`compress.variants.VARIANTS`.

A builder writes its variant into the folder it is given (nothing, for a variant that is a compile setting of
another) and returns a :class:`Built`: the session that runs it, for the parity check, and the facts of how it
was made. Checking, gating and recording are not the builder's job: :func:`export.stage.make_variant` does them
the same way for every variant.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from compress.config import ExportConfig
from compress.errors import UserError
from compress.variants import ONNX_FILE, variant
from export.fusion import fuse_for_cpu
from export.isa import needs_reduced_range
from export.onnx_export import TASKS, export_fp32
from export.parity import ParityReport, compare, encode
from export.quantize import op_counts, quantize_dynamic_int8, quantize_static_int8

log = logging.getLogger(__name__)


@dataclass
class Built:
    """A built variant. ``session``: what runs it (``get_inputs``/``get_outputs``/``run`` as ONNX Runtime has
    them); ``facts``: how it was made, for its :class:`compress.variants.ExportRecord`; ``after``: facts that
    need its parity figures; ``remedy``: replaces the table's when this build knows better; ``note``: appended to
    the log line."""

    session: Any
    facts: dict[str, Any] = field(default_factory=dict)
    after: Callable[[ParityReport], dict[str, Any]] | None = None
    remedy: str | None = None
    note: Callable[[ParityReport], str] | None = None


@dataclass
class QatRetraining:
    """What the QAT variants' retraining needs from the run: ``retrain(student, work)`` trains a (quantizer-
    carrying) copy of the student with the relation loss against a frozen reference and returns its last
    metrics (see :func:`export.qat.retrain`); ``work_dir(name)`` is the variant's checkpoint folder."""

    retrain: Callable[[Any, Path], dict[str, float]]
    work_dir: Callable[[str], Path]
    facts: Callable[[dict[str, float]], dict[str, Any]]


@dataclass
class ExportContext:
    """Everything a builder reads: the config, the PyTorch model and its folder, the tokenizer, optimum's task,
    the staging folder the variants are built in, the calibration lines, the parity batches, the CPU's features
    and, with ``--qat``, the retraining."""

    cfg: ExportConfig
    model_dir: Path
    model: Any
    tokenizer: Any
    task: str
    staging: Path
    calib_texts: list[str]
    batches: list[dict]
    features: dict[str, Any]
    qat: QatRetraining | None = None

    def folder(self, name: str) -> Path:
        """The staged folder of an already built variant ``name``."""
        return self.staging / variant(name).folder

    @functools.cached_property
    def calibration(self) -> list[dict]:
        """The calibration lines as batches (static INT8 and NNCF both calibrate on them)."""
        return encode(self.tokenizer, self.calib_texts)


def _ort_session(path: Path):
    from export.sessions import make_session

    return make_session(path, "cpu", None)


@contextlib.contextmanager
def _int8_source(ctx: ExportContext, fp32_dir: Path, model, name: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The FP32 graph INT8 is made from, and what was fused: for dynamic INT8, ``fp32_dir``'s graph with ONNX
    Runtime's CPU fusions (:mod:`export.fusion`) when ``cfg.fuse`` and the fused graph still matches PyTorch
    within ``cfg.fp32_tolerance``; the unfused graph otherwise (logged and recorded). A temporary fused graph
    is removed on leaving, however the quantization ends."""
    cfg = ctx.cfg
    plain = fp32_dir / ONNX_FILE
    if not cfg.fuse or cfg.int8_method != "dynamic":
        yield plain, {"fused": False}
        return
    fused = ctx.staging / f".{name}.fused.onnx"
    config = model.config
    try:
        ops = fuse_for_cpu(plain, fused, model_type=config.model_type, num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
        check = compare(model, _ort_session(fused), ctx.batches)
        record = {"fused_ops": dict(ops), "fused_max_abs_diff": check.max_abs_diff}
        if ops and check.max_abs_diff <= cfg.fp32_tolerance:
            yield fused, {"fused": True, **record}
        else:
            log.warning("ONNX Runtime's fusions %s (max abs diff %.2e to PyTorch): quantizing the unfused graph",
                        "changed the outputs" if ops else "found nothing to fuse", check.max_abs_diff)
            yield plain, {"fused": False, **record}
    finally:
        fused.unlink(missing_ok=True)


def _quantized_onnx(fp32_dir: Path, out: Path, quantize: Callable[[Path, Path], None], src: Path) -> None:
    """``out`` = ``fp32_dir``'s config and tokenizer + ``quantize(src, out/model.onnx)``."""
    shutil.copytree(fp32_dir, out, ignore=shutil.ignore_patterns(ONNX_FILE))
    quantize(src, out / ONNX_FILE)


def _dynamic(ctx: ExportContext, reduce_range: bool) -> Callable[[Path, Path], None]:
    return lambda src, dst: quantize_dynamic_int8(src, dst, reduce_range=reduce_range,
                                                  quantize_embeddings=ctx.cfg.quantize_embeddings)


def build_fp32(ctx: ExportContext, out: Path) -> Built:
    """optimum-style ONNX export of the PyTorch model (:func:`export.onnx_export.export_fp32`)."""
    export_fp32(ctx.model_dir, out, task=ctx.task, opset=ctx.cfg.opset)
    return Built(_ort_session(out / ONNX_FILE), {"tolerance": ctx.cfg.fp32_tolerance})


def build_int8(ctx: ExportContext, out: Path) -> Built:
    """ONNX Runtime INT8 of fp32: dynamic (from the fused graph where it still matches) or static."""
    cfg = ctx.cfg
    reduce_range = needs_reduced_range(ctx.features)
    if cfg.int8_method == "dynamic":
        quantize = _dynamic(ctx, reduce_range)
    else:
        def quantize(src, dst):
            quantize_static_int8(src, dst, ctx.calibration, reduce_range=reduce_range,
                                 quantize_embeddings=cfg.quantize_embeddings)
    with _int8_source(ctx, ctx.folder("fp32"), ctx.model, "int8") as (source, fusion):
        _quantized_onnx(ctx.folder("fp32"), out, quantize, source)
    facts = {"method": cfg.int8_method, "reduce_range": reduce_range, **fusion,
             "quantized_embeddings": cfg.quantize_embeddings, "op_counts": dict(sorted(op_counts(out / ONNX_FILE).items()))}
    return Built(_ort_session(out / ONNX_FILE), facts,
                 remedy="try --int8-method dynamic or --qat" if cfg.int8_method == "static" else None)


def build_openvino_fp32(ctx: ExportContext, out: Path) -> Built:
    """fp32's graph converted to OpenVINO IR."""
    from export.openvino_export import OpenVINOSession, convert_to_ir

    convert_to_ir(ctx.folder("fp32"), out)
    session = OpenVINOSession(out, "fp32")
    return Built(session, {"tolerance": ctx.cfg.fp32_tolerance, "inference_precision": session.inference_precision})


def build_openvino_bf16(ctx: ExportContext, out: Path) -> Built:
    """openvino-fp32's IR compiled with bf16 inference precision: no file of its own."""
    from export.openvino_export import OpenVINOSession

    session = OpenVINOSession(ctx.folder("openvino-fp32"), "bf16")
    return Built(session, {"inference_precision": session.inference_precision})


def build_openvino_int8(ctx: ExportContext, out: Path) -> Built:
    """NNCF's static INT8 of openvino-fp32's IR, calibrated on the corpus lines."""
    from export.openvino_export import OpenVINOSession, quantize_int8

    quantize_int8(ctx.folder("openvino-fp32"), out, ctx.calibration)
    session = OpenVINOSession(out, "fp32")
    return Built(session, {"method": "nncf-static", "calibration_lines": len(ctx.calib_texts),
                           "inference_precision": session.inference_precision})


def _retraining(ctx: ExportContext, name: str) -> QatRetraining:
    if ctx.qat is None:
        raise UserError(f"{name} is made by quantization-aware retraining of a run's student: export a run with --qat")
    return ctx.qat


def build_int8_qat(ctx: ExportContext, out: Path) -> Built:
    """The student retrained under ONNX Runtime's dynamic INT8 fake quantization, then exported and quantized as
    ``int8`` is (the fake quantization is removed first: the weights carry what was learnt)."""
    from transformers import AutoModel

    from compress.architectures import arch_spec
    from export.qat import fake_quantized

    qat = _retraining(ctx, "int8-qat")
    cfg = ctx.cfg
    spec = arch_spec(ctx.model.config.model_type)
    student = AutoModel.from_pretrained(ctx.model_dir)
    reduce_range = needs_reduced_range(ctx.features)
    work = qat.work_dir("int8-qat")
    with fake_quantized(student, spec, reduce_range=reduce_range, embeddings=cfg.quantize_embeddings):
        metrics = qat.retrain(student, work)
    student.cpu().eval()
    student.save_pretrained(work / "student")
    ctx.tokenizer.save_pretrained(work / "student")
    fp32_dir = export_fp32(work / "student", work / "fp32", task=TASKS["student"], opset=cfg.opset)
    try:
        with _int8_source(ctx, fp32_dir, student, "int8-qat") as (source, fusion):
            _quantized_onnx(fp32_dir, out, _dynamic(ctx, reduce_range), source)
    finally:
        shutil.rmtree(fp32_dir, ignore_errors=True)
    session = _ort_session(out / ONNX_FILE)
    with fake_quantized(student, spec, reduce_range=reduce_range, embeddings=cfg.quantize_embeddings):
        fake_quant = compare(student, session, ctx.batches)  # ORT INT8 against the fake-quantized PyTorch model

    def after(result: ParityReport) -> dict[str, Any]:
        # the INT8 graph's distance to the fake-quantized model, as a share of its distance to FP32
        return {"ort_vs_fake_quant_relative": round(fake_quant.mean_abs_diff / max(result.mean_abs_diff, 1e-12), 4)}

    facts = {"method": "dynamic+qat", "reduce_range": reduce_range, **fusion,
             "quantized_embeddings": cfg.quantize_embeddings, **qat.facts(metrics),
             "ort_vs_fake_quant_max_abs_diff": round(fake_quant.max_abs_diff, 7),
             "op_counts": dict(sorted(op_counts(out / ONNX_FILE).items()))}
    return Built(session, facts, after=after,
                 note=lambda r: f"ONNX Runtime vs fake-quant: max abs diff {fake_quant.max_abs_diff:.2e}")


def build_openvino_int8_qat(ctx: ExportContext, out: Path) -> Built:
    """NNCF's quantizers on the PyTorch student (calibrated on the lines openvino-int8 uses), retrained with the
    relation loss, converted to IR with its trained ranges (:mod:`export.openvino_qat`)."""
    from export.openvino_export import OpenVINOSession, input_names
    from export.openvino_qat import load_for_training, quantize_for_training, save_ir

    qat = _retraining(ctx, "openvino-int8-qat")
    fp32_ir = ctx.folder("openvino-fp32")
    names = input_names(fp32_ir)
    student = quantize_for_training(load_for_training(ctx.model_dir), names, ctx.calibration)
    # NNCF's post-training INT8 of the student before any retraining, against the FP32 IR (≈ PyTorch FP32)
    before = compare(student.eval(), OpenVINOSession(fp32_ir, "fp32"), ctx.batches)
    metrics = qat.retrain(student, qat.work_dir("openvino-int8-qat"))
    student.cpu().eval()
    save_ir(student, names, ctx.batches[0], out, fp32_ir)
    session = OpenVINOSession(out, "fp32")
    fake_quant = compare(student, session, ctx.batches)  # the IR against the trained PyTorch model it came from

    def after(result: ParityReport) -> dict[str, Any]:
        # the IR's distance to the trained PyTorch model, as a share of its distance to FP32
        return {"ir_vs_trained_relative": round(fake_quant.mean_abs_diff / max(result.mean_abs_diff, 1e-12), 4)}

    facts = {"inference_precision": session.inference_precision, "method": "nncf+qat",
             "calibration_lines": len(ctx.calib_texts), **qat.facts(metrics),
             "ir_vs_trained_max_abs_diff": round(fake_quant.max_abs_diff, 7),
             "ir_vs_trained_mean_cosine": round(fake_quant.mean_cosine, 7),
             "before_qat": {k: before.as_dict().get(k) for k in ("mean_cosine", "min_cosine", "nn_agreement", "nn_agreement_clear")}}
    return Built(session, facts, after=after,
                 note=lambda r: f"{before.mean_cosine:.5f} before retraining; IR vs the trained PyTorch model: "
                                f"max abs diff {fake_quant.max_abs_diff:.2e}")


BUILDERS: dict[str, Callable[[ExportContext, Path], Built]] = {
    "fp32": build_fp32, "int8": build_int8, "openvino-fp32": build_openvino_fp32, "openvino-bf16": build_openvino_bf16,
    "openvino-int8": build_openvino_int8, "int8-qat": build_int8_qat, "openvino-int8-qat": build_openvino_int8_qat,
}
