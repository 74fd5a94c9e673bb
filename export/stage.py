"""``compress export``: the run's model to ONNX (FP32, optionally INT8), each variant checked against PyTorch."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from compress.config import ExportConfig, to_plain
from compress.corpus import expand_pattern, sample_lines
from compress.prepare_data import text_sources
from compress.errors import UserError, first_line
from compress.model_card import write_model_card
from compress.run_dir import (
    DISTILL, EXPORT_VARIANTS, PARITY_FILE, QAT_WORK, STUDENT, RunDir, atomic_write_text,
    library_versions, now, read_provenance, sha256_of, weights_are_whole, write_provenance,
)
from compress.sentence_modules import copy_sentence_modules
from compress.tracking import require_trackers
from export.fusion import fuse_for_cpu
from export.isa import cpu_features, needs_reduced_range
from export.onnx_export import TASKS, export_fp32
from export.parity import ParityReport, compare, encode, random_batches
from export.quantize import op_counts, quantize_dynamic_int8, quantize_static_int8

log = logging.getLogger(__name__)
EMBEDDING_SHARE_FOR_INT8 = 0.75  # quantize_embeddings=auto stores the embedding tables in INT8 from this share on


def _model_dir(run_dir: RunDir, cfg: ExportConfig) -> tuple[Path, str]:
    """The folder to export and optimum's task for it; a clear error when the stage before is missing."""
    distill = run_dir.stage(DISTILL)
    if not distill or distill.get("status") != "complete" or not run_dir.student_dir.is_dir():
        raise UserError(f"{run_dir.path} has no finished distillation: run {run_dir.distill_remedy()} first")
    if cfg.model == STUDENT:
        if not weights_are_whole(run_dir.student_dir):
            raise UserError(f"{run_dir.student_dir} is damaged (its weights do not load): rebuild it with "
                            f"{run_dir.distill_remedy()}")
        return run_dir.student_dir, TASKS["student"]
    if cfg.model == "teacher":  # the full teacher, as the reference a user would otherwise deploy
        teacher = run_dir.teacher()
        if "path" in distill["inputs"]["teacher"] and not Path(teacher).is_dir():  # a local folder, since removed
            raise UserError(f"the teacher this run was distilled from, {teacher}, is not there any more: restore that "
                            "folder to export the teacher")
        return Path(teacher), TASKS["student"]
    path = run_dir.finetune_dir(cfg.model)
    if not path.is_dir():
        raise UserError(f"no fine-tuned model '{cfg.model}' in {path.parent}: "
                        "export the student (--model student) or fine-tune one first")
    return path, TASKS["classifier"]


TEXT_SAMPLE = 50_000  # lines drawn from the corpora for calibration, parity and QAT (one streaming pass)


def _texts(run_dir: RunDir, cfg: ExportConfig) -> list[str]:
    """Lines sampled from the calibration corpus or, by default, the distill corpora (one streaming pass)."""
    sources = cfg.calib_corpus or [c.path for c in run_dir.distill_config().data.corpora]
    paths = [text for pattern in sources for path in expand_pattern(pattern) for text in text_sources(path)]
    return sample_lines(paths, TEXT_SAMPLE, cfg.seed)


def split_texts(lines: list[str], cfg: ExportConfig) -> tuple[list[str], list[str]]:
    """(calibration lines, parity lines): disjoint samples of ``lines`` (overlapping only when there are too few)."""
    calib = lines[: cfg.calib_samples]
    parity = lines[cfg.calib_samples : cfg.calib_samples + cfg.parity_samples] or calib[: cfg.parity_samples]
    return calib, parity


def _session(path: Path):
    from export.sessions import make_session

    return make_session(path, "cpu", None)


def _weights_sha256(model_dir: Path) -> str | None:
    weights = model_dir / "model.safetensors"
    return sha256_of(weights) if weights.is_file() else None


def _quantize_embeddings(setting: bool | str, model) -> bool:
    """Resolve ``quantize_embeddings``: ``auto`` is true when the embedding tables hold at least
    :data:`EMBEDDING_SHARE_FOR_INT8` of the parameters (a 250k-vocabulary 6×384 student: 90%; an English
    30k-vocabulary MiniLM: 52%). Measured on the demo's multilingual student (docs/benchmarks.md): the INT8
    file 377 → 102 MB, the same task scores (INT8, and INT8 after QAT within a point), 1–2% more latency."""
    import torch

    if setting != "auto":
        return bool(setting)
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    share = tables / sum(p.numel() for p in model.parameters())
    log.info("quantize_embeddings=auto: embedding tables are %.0f%% of the parameters, so they are %s",
             100 * share, "stored in INT8" if share >= EMBEDDING_SHARE_FOR_INT8 else "kept in FP32")
    return share >= EMBEDDING_SHARE_FOR_INT8


def _size(folder: Path) -> int:
    return (folder / "model.onnx").stat().st_size


def run(cfg: ExportConfig, run_dir: RunDir, *, resume: bool = False) -> dict[str, Any]:
    """Export FP32 (and INT8 if asked); writes ``export/<variant>/``, ``export/parity.json`` and the manifest.
    ``resume`` continues an interrupted quantization-aware retraining from its checkpoint. One process at a
    time per run folder (a second is refused)."""
    if not run_dir.path.is_dir():
        raise UserError(f"{run_dir.path} has no finished distillation: run `compress distill --run-dir {run_dir.path} ...` first")
    with run_dir.locked("compress export"):
        return _export(cfg, run_dir, resume=resume)


def _export(cfg: ExportConfig, run_dir: RunDir, *, resume: bool) -> dict[str, Any]:
    model_dir, task = _model_dir(run_dir, cfg)
    if cfg.qat and cfg.model != "student":
        raise UserError("--qat retrains the task-agnostic student: export it with --qat, and other models with --int8")
    if cfg.qat:  # before any export work, not after it
        require_trackers(cfg.qat_train.report_to, "qat_train.report_to")
    if resume and cfg.qat and not any((run_dir.qat_work_dir(v) / "checkpoint.pt").exists() for v in QAT_WORK):
        raise UserError(f"nothing to resume in {run_dir.export_dir()} (no QAT checkpoint): run the export without --resume")
    out = run_dir.export_dir(cfg.model)
    stage = run_dir.export_stage(cfg.model)

    def qat(cfg, staging, model, tokenizer, lines, calib_texts, parity_texts, batches, features):
        return _qat_variants(cfg, run_dir, staging, model_dir, model, tokenizer, lines, calib_texts, parity_texts,
                             batches, features, resume=resume)

    try:
        report, cfg = export_model(model_dir, out, cfg, _texts(run_dir, cfg), task=task, qat=qat if cfg.qat else None)
    except BaseException as err:
        if run_dir.stage(stage):
            run_dir.update_stage(stage, last_failure={"at": now(), "error": first_line(err), "config": to_plain(cfg)})
        raise
    outputs = {name: str(out / report["variants"][name].get("folder", name)) for name in report["variants"]}
    outputs["parity"] = str(out / PARITY_FILE)
    if cfg.model == STUDENT:  # one folder sentence-transformers loads with every variant under its file names
        from export.deploy import build_deploy_folder

        outputs["deploy"] = str(build_deploy_folder(run_dir, report))
    run_dir.update_stage(stage, status="complete", finished=now(), config=to_plain(cfg), versions=library_versions(),
                         inputs={"model": str(model_dir), "sha256": _weights_sha256(model_dir)}, outputs=outputs,
                         last_failure=None,
                         metrics={name: {k: v[k] for k in ("max_abs_diff", "mean_cosine", "min_cosine", "nn_agreement", "size_bytes")}
                                  for name, v in report["variants"].items()})
    return report


def export_model(model_dir: Path, out: Path, cfg: ExportConfig, lines: list[str], *, task: str | None = None,
                 qat=None) -> tuple[dict[str, Any], ExportConfig]:
    """Export one model folder to ``out/<variant>/`` (fp32, int8 when ``cfg.int8``) with ``out/parity.json``:
    what ``compress export`` does for a run, callable on any Hugging Face encoder folder (as optimum's
    exporter is), so that benchmarks measure the very files that ship.

    ``lines``: real text for calibration and the parity checks; ``task``: optimum's task (default: from the
    folder's config, a classifier when it has labels). ``qat(cfg, staging, model, tokenizer, lines,
    calib_texts, parity_texts, batches, features)`` builds the QAT variants (the run's retraining; a dict of
    variant → parity record). Every variant is
    built in ``.<out>.new/`` and checked; ``out`` is replaced only once all have passed. Returns (the parity
    report, the config with ``quantize_embeddings`` resolved).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if "openvino" in cfg.runtimes:  # refused before anything is built when the extra is missing
        from export.openvino_export import require_openvino

        require_openvino(with_nncf=cfg.int8)
    try:
        if task is None:
            labelled = getattr(AutoConfig.from_pretrained(model_dir), "architectures", None) or []
            task = TASKS["classifier"] if any("SequenceClassification" in a for a in labelled) else TASKS["student"]
        loader = AutoModel if task == TASKS["student"] else AutoModelForSequenceClassification
        model = loader.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as err:
        raise UserError(f"cannot load {model_dir} ({first_line(err)}): the folder is damaged; re-run `compress distill`") from None
    if cfg.int8 or cfg.qat:
        cfg = cfg.model_copy(update={"quantize_embeddings": _quantize_embeddings(cfg.quantize_embeddings, model)})
    calib_texts, parity_texts = split_texts(lines, cfg)
    max_positions = getattr(model.config, "max_position_embeddings", 512) - 2
    batches = encode(tokenizer, parity_texts) + random_batches(
        model.config.vocab_size, set(tokenizer.all_special_ids), cfg.seed, max_positions)
    staging = out.parent / f".{out.name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        features = cpu_features()
        report: dict[str, Any] = {"cpu": features, "model": cfg.model, "variants": {}}
        fp32_dir = export_fp32(model_dir, staging / "fp32", task=task, opset=cfg.opset)
        fp32 = compare(model, _session(fp32_dir / "model.onnx"), batches)
        if fp32.max_abs_diff > cfg.fp32_tolerance:
            raise UserError(f"FP32 ONNX differs from PyTorch by {fp32.max_abs_diff:.2e} (tolerance {cfg.fp32_tolerance:.0e}, "
                            f"mean cosine {fp32.mean_cosine:.6f}): the export is wrong (the previous export, if any, is "
                            "kept); try another --opset")
        report["variants"]["fp32"] = {**fp32.as_dict(), "size_bytes": _size(fp32_dir), "tolerance": cfg.fp32_tolerance}
        log.info("fp32: max abs diff %.2e, mean cosine %.6f", fp32.max_abs_diff, fp32.mean_cosine)
        if cfg.int8 and "onnxruntime" in cfg.runtimes:
            report["variants"]["int8"] = _int8(cfg, fp32_dir, staging / "int8", model, tokenizer, calib_texts, batches, features)
        if "openvino" in cfg.runtimes:
            report["variants"] |= _openvino_variants(cfg, fp32_dir, staging, model, tokenizer, calib_texts, batches)
        if qat is not None:
            report["variants"] |= qat(cfg, staging, model, tokenizer, lines, calib_texts, parity_texts, batches, features)
        atomic_write_text(staging / PARITY_FILE, json.dumps(report, indent=2) + "\n")
        source = read_provenance(model_dir)
        for name, record in report["variants"].items():
            if (staging / name).is_dir():  # openvino-bf16 is a compile setting of openvino-fp32, not a folder
                copy_sentence_modules(model_dir, staging / name)
                write_provenance(staging / name, stage="export", variant=name, source_model=str(model_dir),
                                 source=source, parity=record, export_config=to_plain(cfg))
                write_model_card(staging / name, final=out / name)
        _publish(staging, out, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report, cfg


def _publish(staging: Path, out: Path, report: dict[str, Any]) -> None:
    """Swap the checked variants of ``staging`` into ``out``; variants this export did not make go (they would not
    match its fp32), and so does the QAT work folder when QAT was not run."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / ".old"
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for name in EXPORT_VARIANTS:
        if (out / name).is_dir():
            if name not in report["variants"]:
                log.info("removing %s: this export did not produce it, so it would not match fp32", out / name)
            (out / name).rename(old / name)
        if name in report["variants"]:
            (staging / name).rename(out / name)
    os.replace(staging / PARITY_FILE, out / PARITY_FILE)
    for variant, work in QAT_WORK.items():
        if variant not in report["variants"]:
            shutil.rmtree(out / work, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _int8_source(cfg, fp32_dir: Path, model, batches, name: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The FP32 graph INT8 is made from, and what was fused: for dynamic INT8, ``fp32_dir``'s graph with ONNX
    Runtime's CPU fusions (:mod:`export.fusion`) when ``cfg.fuse`` and the fused graph still matches PyTorch
    within ``cfg.fp32_tolerance``; the unfused graph otherwise (logged and recorded). A temporary fused graph
    is removed on leaving, however the quantization ends."""
    plain = fp32_dir / "model.onnx"
    if not cfg.fuse or cfg.int8_method != "dynamic":
        yield plain, {"fused": False}
        return
    fused = fp32_dir.parent / f".{name}.fused.onnx"
    config = model.config
    try:
        ops = fuse_for_cpu(plain, fused, model_type=config.model_type, num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
        check = compare(model, _session(fused), batches)
        record = {"fused_ops": dict(ops), "fused_max_abs_diff": check.max_abs_diff}
        if ops and check.max_abs_diff <= cfg.fp32_tolerance:
            yield fused, {"fused": True, **record}
        else:
            log.warning("ONNX Runtime's fusions %s (max abs diff %.2e to PyTorch): quantizing the unfused graph",
                        "changed the outputs" if ops else "found nothing to fuse", check.max_abs_diff)
            yield plain, {"fused": False, **record}
    finally:
        fused.unlink(missing_ok=True)


def _quantized_copy(fp32_dir: Path, dst: Path, quantize, src: Path | None = None) -> Path:
    """``dst`` = ``fp32_dir``'s config/tokenizer + ``quantize(src, dst_onnx)`` (``src`` defaults to
    ``fp32_dir``'s model.onnx), via a temp folder."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(fp32_dir, tmp, ignore=shutil.ignore_patterns("model.onnx"))
    try:
        quantize(src or fp32_dir / "model.onnx", tmp / "model.onnx")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _accept(tmp: Path, dst: Path, result: ParityReport, cfg: ExportConfig, what: str,
            hint: str = "try --qat") -> None:
    """Move ``tmp`` to ``dst`` unless its fidelity is under ``min_int8_cosine`` (then it is deleted)."""
    if result.mean_cosine < cfg.min_int8_cosine and not cfg.force:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"INT8 ({what}) embeddings keep only {result.mean_cosine:.4f} mean cosine "
                        f"(worst {result.min_cosine:.4f}) to PyTorch, under export.min_int8_cosine={cfg.min_int8_cosine}: "
                        f"not written; {hint}, or --force to keep it")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def _qat_variants(cfg, run_dir: RunDir, out: Path, model_dir: Path, model, tokenizer, lines, calib_texts, parity_texts,
                  batches, features, *, resume: bool = False) -> dict[str, Any]:
    """Quantization-aware retraining with the relation loss, once per INT8 scheme asked for (``cfg.qat_for``):
    ``int8-qat`` (ORT's dynamic INT8) and ``openvino-int8-qat`` (NNCF's, for OpenVINO).
    Each starts from the distilled student and has its own work folder and checkpoint; ``resume`` continues
    each one that has a checkpoint."""
    from compress.architectures import arch_spec, layer_list
    from compress.teacher import load_teacher
    from export.qat import retrain

    distill = run_dir.stage(DISTILL)
    distill_cfg = run_dir.distill_config()
    spec = arch_spec(model.config.model_type)
    if cfg.qat_reference == "original" and (model_dir / "trimmed_vocab.json").exists():
        raise UserError("this student has a trimmed vocabulary, so the original teacher reads other token ids: "
                        "use the default QAT reference (--teacher student)")
    if cfg.qat_reference == "student":
        reference, ref_spec, ref_layer = model, spec, len(layer_list(model, spec)) - 1
    else:
        teacher = load_teacher(distill_cfg.teacher)
        reference, ref_spec, ref_layer = teacher.model, teacher.spec, distill["resolved"]["teacher_layer"] - 1
    held_out = set(parity_texts)
    train_lines = [line for line in lines if line not in held_out]
    if not train_lines:  # a corpus smaller than the parity sample: train on those lines too, and say so
        log.warning("QAT: the corpus is too small to hold out the parity lines; they are trained on as well")
        train_lines = list(parity_texts)
    # The embedding term compares vectors: it needs a reference of the student's width.
    same_width = reference.config.hidden_size == model.config.hidden_size

    def retrain_in(student, work: Path) -> dict[str, float]:
        """Retrain the (fake-quantized) ``student`` with its checkpoint in ``work``; its last metrics."""
        resumes = resume and (work / "checkpoint.pt").exists()
        if not resumes:
            shutil.rmtree(work, ignore_errors=True)
        return retrain(student, reference, spec=spec, reference_spec=ref_spec, reference_layer=ref_layer,
                       tokenizer=tokenizer, lines=train_lines, relation_heads=distill["resolved"]["relation_heads"],
                       cfg=cfg.qat_train, out_dir=work, output_weight=cfg.qat_output_weight,
                       embedding_weight=cfg.qat_embedding_weight if same_width else 0.0,
                       max_length=distill_cfg.data.max_length, resume=resumes)

    def common(metrics: dict[str, float]) -> dict[str, Any]:
        return {"qat_reference": cfg.qat_reference, "qat_steps": cfg.qat_train.steps, "qat_final_loss": metrics.get("loss")}

    variants: dict[str, Any] = {}
    if cfg.qat_for("onnxruntime"):
        variants["int8-qat"] = _ort_qat(cfg, run_dir, out, model_dir, model, tokenizer, batches, features, spec,
                                        retrain_in, common)
    if cfg.qat_for("openvino"):
        variants["openvino-int8-qat"] = _openvino_qat(cfg, run_dir, out, model_dir, model, tokenizer, calib_texts,
                                                      batches, retrain_in, common)
    return variants


def _ort_qat(cfg, run_dir: RunDir, out: Path, model_dir: Path, model, tokenizer, batches, features, spec,
             retrain_in, common) -> dict[str, Any]:
    """int8-qat: the student retrained under ORT's dynamic INT8 fake quantization, then exported and quantized
    as ``int8`` is (the fake quantization is removed first: the weights carry what was learnt)."""
    from transformers import AutoModel

    from export.qat import fake_quantized

    student = AutoModel.from_pretrained(model_dir)
    reduce_range = needs_reduced_range(features)
    qat_dir = run_dir.qat_work_dir("int8-qat")
    with fake_quantized(student, spec, reduce_range=reduce_range, embeddings=cfg.quantize_embeddings):
        metrics = retrain_in(student, qat_dir)
    student.cpu().eval()
    student.save_pretrained(qat_dir / "student")
    tokenizer.save_pretrained(qat_dir / "student")
    fp32_dir = export_fp32(qat_dir / "student", qat_dir / "fp32", task=TASKS["student"], opset=cfg.opset)
    with _int8_source(cfg, fp32_dir, student, batches, "int8-qat") as (source, fusion):
        tmp = _quantized_copy(fp32_dir, out / "int8-qat", lambda src, dst: quantize_dynamic_int8(
            src, dst, reduce_range=reduce_range, quantize_embeddings=cfg.quantize_embeddings), source)
    session = _session(tmp / "model.onnx")
    result = compare(model, session, batches)  # fidelity to the distilled FP32 student
    with fake_quantized(student, spec, reduce_range=reduce_range, embeddings=cfg.quantize_embeddings):
        fake_quant = compare(student, session, batches)  # ORT INT8 against the fake-quantized PyTorch model
    _accept(tmp, out / "int8-qat", result, cfg, "dynamic, after QAT",
            hint="retrain more gently (fewer --qat-steps, a lower qat_train.lr)")
    shutil.rmtree(fp32_dir, ignore_errors=True)
    # the INT8 graph's distance to the fake-quantized model, as a share of its distance to FP32
    relative = fake_quant.mean_abs_diff / max(result.mean_abs_diff, 1e-12)
    log.info("int8-qat: mean cosine %.5f, worst %.5f, %s; ORT vs fake-quant: mean abs diff %.1f%% of ORT vs FP32, "
             "max %.2e", result.mean_cosine, result.min_cosine, result.agreement(), 100 * relative,
             fake_quant.max_abs_diff)
    return {**result.as_dict(), "size_bytes": _size(out / "int8-qat"), "method": "dynamic+qat",
            "reduce_range": reduce_range, **fusion, "quantized_embeddings": cfg.quantize_embeddings,
            **common(metrics), "ort_vs_fake_quant_max_abs_diff": round(fake_quant.max_abs_diff, 7),
            "ort_vs_fake_quant_relative": round(relative, 4),
            "op_counts": dict(sorted(op_counts(out / "int8-qat" / "model.onnx").items()))}


def _openvino_qat(cfg, run_dir: RunDir, out: Path, model_dir: Path, model, tokenizer, calib_texts, batches,
                  retrain_in, common) -> dict[str, Any]:
    """openvino-int8-qat: NNCF's quantizers on the PyTorch student (calibrated on the lines openvino-int8 uses),
    retrained with the relation loss, converted to IR with its trained ranges (:mod:`export.openvino_qat`)."""
    from export.openvino_export import IR_FILE, OpenVINOSession, ir_size, input_names
    from export.openvino_qat import load_for_training, quantize_for_training, save_ir

    names = input_names(out / "openvino-fp32")
    student = quantize_for_training(load_for_training(model_dir), names, encode(tokenizer, calib_texts))
    # NNCF's post-training INT8 of the student before any retraining, against the FP32 IR (≈ PyTorch FP32)
    before = compare(student.eval(), OpenVINOSession(out / "openvino-fp32", "fp32"), batches)
    metrics = retrain_in(student, run_dir.qat_work_dir("openvino-int8-qat"))
    student.cpu().eval()
    tmp = out / ".openvino-int8-qat.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_ir(student, names, batches[0], tmp, out / "openvino-fp32")
    session = OpenVINOSession(tmp, "fp32")
    result = compare(model, session, batches)  # fidelity to the distilled FP32 student
    fake_quant = compare(student, session, batches)  # the IR against the trained PyTorch model it came from
    _accept(tmp, out / "openvino-int8-qat", result, cfg, "OpenVINO, NNCF after QAT",
            hint="retrain more gently (fewer --qat-steps, a lower qat_train.lr)")
    log.info("openvino-int8-qat: mean cosine %.5f (%.5f before retraining), worst %.5f, %s; IR vs the trained PyTorch "
             "model: max abs diff %.2e", result.mean_cosine, before.mean_cosine, result.min_cosine, result.agreement(),
             fake_quant.max_abs_diff)
    return {**result.as_dict(), "runtime": "openvino", "folder": "openvino-int8-qat", "file": IR_FILE,
            "size_bytes": ir_size(out / "openvino-int8-qat"), "inference_precision": session.inference_precision,
            "method": "nncf+qat", "calibration_lines": len(calib_texts), **common(metrics),
            "ir_vs_trained_max_abs_diff": round(fake_quant.max_abs_diff, 7),
            # the IR's distance to the trained PyTorch model, as a share of its distance to FP32
            "ir_vs_trained_relative": round(fake_quant.mean_abs_diff / max(result.mean_abs_diff, 1e-12), 4),
            "ir_vs_trained_mean_cosine": round(fake_quant.mean_cosine, 7),
            "before_qat": {k: before.as_dict()[k] for k in ("mean_cosine", "min_cosine", "nn_agreement", "nn_agreement_clear")}}


def _openvino_variants(cfg, fp32_dir: Path, out: Path, model, tokenizer, calib_texts, batches) -> dict[str, Any]:
    """openvino-fp32 (the FP32 graph as IR), openvino-bf16 (the same IR compiled to bf16, where the CPU has it) and,
    with ``cfg.int8``, openvino-int8 (NNCF static INT8 calibrated on ``calib_texts``), each checked against
    PyTorch by the same gates as the ONNX Runtime variants (:mod:`export.openvino_export`)."""
    from export.openvino_export import IR_FILE, OpenVINOSession, convert_to_ir, cpu_has_bf16, ir_size, quantize_int8

    def record(result: ParityReport, session: OpenVINOSession, folder: str, **extra) -> dict[str, Any]:
        return {**result.as_dict(), "runtime": "openvino", "folder": folder, "file": IR_FILE,
                "size_bytes": ir_size(out / folder), "inference_precision": session.inference_precision, **extra}

    variants: dict[str, Any] = {}
    ir = convert_to_ir(fp32_dir, out / "openvino-fp32")
    session = OpenVINOSession(ir, "fp32")
    fp32 = compare(model, session, batches)
    if fp32.max_abs_diff > cfg.fp32_tolerance:
        raise UserError(f"OpenVINO FP32 differs from PyTorch by {fp32.max_abs_diff:.2e} (tolerance "
                        f"{cfg.fp32_tolerance:.0e}): the conversion is wrong (the previous export, if any, is kept); "
                        "export with --runtime onnxruntime")
    variants["openvino-fp32"] = record(fp32, session, "openvino-fp32", tolerance=cfg.fp32_tolerance)
    log.info("openvino-fp32: max abs diff %.2e, mean cosine %.6f", fp32.max_abs_diff, fp32.mean_cosine)
    if cpu_has_bf16():
        session = OpenVINOSession(ir, "bf16")
        bf16 = compare(model, session, batches)
        if bf16.mean_cosine < cfg.min_int8_cosine and not cfg.force:
            raise UserError(f"OpenVINO bf16 keeps only {bf16.mean_cosine:.4f} mean cosine to PyTorch, under "
                            f"export.min_int8_cosine={cfg.min_int8_cosine}: not written; --force to keep it")
        variants["openvino-bf16"] = record(bf16, session, "openvino-fp32")
        log.info("openvino-bf16: mean cosine %.6f, %s", bf16.mean_cosine, bf16.agreement())
    else:
        log.info("this CPU has no bf16 (AVX-512 BF16 or AMX): no openvino-bf16 variant")
    if cfg.int8:
        tmp = out / ".openvino-int8.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        quantize_int8(ir, tmp, encode(tokenizer, calib_texts))
        session = OpenVINOSession(tmp, "fp32")
        int8 = compare(model, session, batches)
        _accept(tmp, out / "openvino-int8", int8, cfg, "OpenVINO, NNCF static", hint="try --runtime onnxruntime")
        variants["openvino-int8"] = record(int8, session, "openvino-int8", method="nncf-static",
                                           calibration_lines=len(calib_texts))
        log.info("openvino-int8: mean cosine %.5f, worst %.5f, %s", int8.mean_cosine, int8.min_cosine, int8.agreement())
    return variants


def _int8(cfg, fp32_dir: Path, int8_dir: Path, model, tokenizer, calib_texts, batches, features) -> dict[str, Any]:
    reduce_range = needs_reduced_range(features)
    if cfg.int8_method == "dynamic":
        def quantize(src, dst):
            quantize_dynamic_int8(src, dst, reduce_range=reduce_range, quantize_embeddings=cfg.quantize_embeddings)
    else:
        calibration = encode(tokenizer, calib_texts)

        def quantize(src, dst):
            quantize_static_int8(src, dst, calibration, reduce_range=reduce_range, quantize_embeddings=cfg.quantize_embeddings)
    with _int8_source(cfg, fp32_dir, model, batches, "int8") as (source, fusion):
        tmp = _quantized_copy(fp32_dir, int8_dir, quantize, source)
    result: ParityReport = compare(model, _session(tmp / "model.onnx"), batches)
    _accept(tmp, int8_dir, result, cfg, cfg.int8_method,
            hint="try --int8-method dynamic or --qat" if cfg.int8_method == "static" else "try --qat")
    log.info("int8 (%s): mean cosine %.5f, worst %.5f, %s", cfg.int8_method, result.mean_cosine, result.min_cosine,
             result.agreement())
    return {**result.as_dict(), "size_bytes": _size(int8_dir), "method": cfg.int8_method, "reduce_range": reduce_range,
            **fusion, "quantized_embeddings": cfg.quantize_embeddings,
            "op_counts": dict(sorted(op_counts(int8_dir / "model.onnx").items()))}
