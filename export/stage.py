"""``compress export``: the run's model to ONNX Runtime and OpenVINO variants, each checked against PyTorch.

Which variants exist, where each lives and which gate it passes is :data:`compress.variants.VARIANTS`; how each
is built is :mod:`export.builders`. Every variant goes the same way (:func:`make_variant`): built aside in the
staging folder, compared with PyTorch on real and random inputs, gated, moved into place and recorded; the
export folder is replaced only once every variant has passed.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from compress.config import ExportConfig, to_plain
from compress.corpus import expand_pattern, sample_lines
from compress.prepare_data import text_sources
from compress.errors import UserError, first_line
from compress.model_card import write_model_card
from compress.run_dir import (
    DISTILL, PARITY_FILE, STUDENT, RunDir, atomic_write_text, library_versions, now, read_provenance, sha256_of,
    weights_are_whole, write_provenance,
)
from compress.sentence_modules import copy_sentence_modules
from compress.tracking import require_trackers
from compress.variants import QAT_WORK, VARIANT_FOLDERS, VARIANTS, ExportRecord, ExportReport, VariantSpec
from export.builders import BUILDERS, ExportContext, QatRetraining
from export.isa import cpu_features
from export.onnx_export import TASKS
from export.parity import ParityReport, compare, encode, random_batches

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


def _weights_sha256(model_dir: Path) -> str | None:
    weights = model_dir / "model.safetensors"
    return sha256_of(weights) if weights.is_file() else None


def resolve_quantize_embeddings(setting: bool | str, model) -> bool:
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


def run(cfg: ExportConfig, run_dir: RunDir, *, resume: bool = False) -> ExportReport:
    """Export FP32 (and INT8 if asked); writes ``export/<variant>/``, ``export/parity.json`` and the manifest.
    ``resume`` continues an interrupted quantization-aware retraining from its checkpoint. One process at a
    time per run folder (a second is refused)."""
    if not run_dir.path.is_dir():
        raise UserError(f"{run_dir.path} has no finished distillation: run `compress distill --run-dir {run_dir.path} ...` first")
    with run_dir.locked("compress export"):
        return _export(cfg, run_dir, resume=resume)


def _export(cfg: ExportConfig, run_dir: RunDir, *, resume: bool) -> ExportReport:
    model_dir, task = _model_dir(run_dir, cfg)
    if cfg.qat and cfg.model != "student":
        raise UserError("--qat retrains the task-agnostic student: export it with --qat, and other models with --int8")
    if cfg.qat:  # before any export work, not after it
        require_trackers(cfg.qat_train.report_to, "qat_train.report_to")
    if resume and cfg.qat and not any((run_dir.qat_work_dir(v) / "checkpoint.pt").exists() for v in QAT_WORK):
        raise UserError(f"nothing to resume in {run_dir.export_dir()} (no QAT checkpoint): run the export without --resume")
    out = run_dir.export_dir(cfg.model)
    stage = run_dir.export_stage(cfg.model)
    try:
        report, cfg = export_model(model_dir, out, cfg, _texts(run_dir, cfg), task=task,
                                   run_dir=run_dir if cfg.qat else None, resume=resume)
    except BaseException as err:
        if run_dir.stage(stage):
            run_dir.update_stage(stage, last_failure={"at": now(), "error": first_line(err), "config": to_plain(cfg)})
        raise
    outputs = {name: str(out / record.folder) for name, record in report.variants.items()}
    outputs["parity"] = str(out / PARITY_FILE)
    if cfg.model == STUDENT:  # one folder sentence-transformers loads with every variant under its file names
        from export.deploy import build_deploy_folder

        outputs["deploy"] = str(build_deploy_folder(run_dir, report))
    run_dir.update_stage(stage, status="complete", finished=now(), config=to_plain(cfg), versions=library_versions(),
                         inputs={"model": str(model_dir), "sha256": _weights_sha256(model_dir)}, outputs=outputs,
                         last_failure=None,
                         metrics={name: record.summary() for name, record in report.variants.items()})
    return report


def wanted(spec: VariantSpec, cfg: ExportConfig, features: dict[str, Any]) -> bool:
    """Whether this export makes ``spec``: its runtime asked for, and what else it needs (``--int8``, ``--qat``
    for its runtime, a CPU with native bf16)."""
    if spec.runtime not in cfg.runtimes:
        return False
    if spec.made_with == "cpu-bf16":
        from export.openvino_export import cpu_has_bf16

        has_bf16 = cpu_has_bf16()  # asks OpenVINO's CPU plugin: once
        if not has_bf16:
            log.info("this CPU has no bf16 (AVX-512 BF16 or AMX): no %s variant", spec.name)
        return has_bf16
    return {None: True, "int8": cfg.int8, "qat": cfg.qat_for(spec.runtime)}[spec.made_with]


def variants_to_make(cfg: ExportConfig, features: dict[str, Any]) -> list[VariantSpec]:
    """The variants this export makes, in build order: the :func:`wanted` ones and those they are made from
    (``--runtime openvino`` converts the FP32 ONNX, so that is written too)."""
    names = {spec.name for spec in VARIANTS if wanted(spec, cfg, features)}
    for spec in reversed(VARIANTS):  # a source comes before the variants made from it
        if spec.name in names and spec.source:
            names.add(spec.source)
    return [spec for spec in VARIANTS if spec.name in names]


def gate(spec: VariantSpec, result: ParityReport, cfg: ExportConfig, remedy: str) -> None:
    """The variant's gate (:class:`compress.variants.VariantSpec`): a one-line error when it fails."""
    if spec.gate == "fp32" and result.max_abs_diff > cfg.fp32_tolerance:
        raise UserError(f"{spec.label} differs from PyTorch by {result.max_abs_diff:.2e} (tolerance "
                        f"{cfg.fp32_tolerance:.0e}, mean cosine {result.mean_cosine:.6f}): the export is wrong (the "
                        f"previous export, if any, is kept); {remedy}")
    if spec.gate == "cosine" and result.mean_cosine < cfg.min_int8_cosine and not cfg.force:
        raise UserError(f"{spec.label} keeps only {result.mean_cosine:.4f} mean cosine (worst {result.min_cosine:.4f}) "
                        f"to PyTorch, under export.min_int8_cosine={cfg.min_int8_cosine}: not written; {remedy}, or "
                        "--force to keep it")


def make_variant(spec: VariantSpec, ctx: ExportContext) -> ExportRecord:
    """Build → check → gate → record, the same for every variant: built in ``.<name>.tmp`` beside its place in
    the staging folder, compared with the PyTorch model on the parity batches, gated, then moved into place."""
    tmp = ctx.staging / f".{spec.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        built = BUILDERS[spec.name](ctx, tmp)
        result = compare(ctx.model, built.session, ctx.batches)
        gate(spec, result, ctx.cfg, built.remedy or spec.remedy)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if spec.has_folder:
        tmp.rename(ctx.folder(spec.name))
    record = ExportRecord(runtime=spec.runtime, folder=spec.folder, file=spec.file, precision=spec.precision,
                          size_bytes=spec.size_bytes(ctx.folder(spec.name)), **result.as_dict(), **built.facts,
                          **(built.after(result) if built.after else {}))
    log.info("%s: max abs diff %.2e, mean cosine %.6f, worst %.5f, %s%s", spec.name, result.max_abs_diff,
             result.mean_cosine, result.min_cosine, result.agreement(), f"; {built.note(result)}" if built.note else "")
    return record


def export_model(model_dir: Path, out: Path, cfg: ExportConfig, lines: list[str], *, task: str | None = None,
                 run_dir: RunDir | None = None, resume: bool = False) -> tuple[ExportReport, ExportConfig]:
    """Export one model folder to ``out/<variant>/`` with ``out/parity.json``: what ``compress export`` does for a
    run, callable on any Hugging Face encoder folder (as optimum's exporter is), so that benchmarks measure the
    very files that ship.

    ``lines``: real text for calibration, the parity checks and QAT; ``task``: optimum's task (default: from the
    folder's config, a classifier when it has labels); ``run_dir``: the run whose student ``--qat`` retrains
    (``resume``: from its checkpoints). Every variant is built in ``.<out>.new/`` and checked; ``out`` is
    replaced only once all have passed. Returns (the report, the config with ``quantize_embeddings`` resolved).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if "openvino" in cfg.runtimes:  # refused before anything is built when the extra is missing
        from export.openvino_export import require_openvino

        require_openvino(with_nncf=cfg.int8 or cfg.qat_for("openvino"))
    if cfg.qat and run_dir is None:
        raise UserError("--qat retrains a run's distilled student: export a run folder")
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
        cfg = cfg.model_copy(update={"quantize_embeddings": resolve_quantize_embeddings(cfg.quantize_embeddings, model)})
    calib_texts, parity_texts = split_texts(lines, cfg)
    max_positions = getattr(model.config, "max_position_embeddings", 512) - 2
    batches = encode(tokenizer, parity_texts) + random_batches(
        model.config.vocab_size, set(tokenizer.all_special_ids), cfg.seed, max_positions)
    staging = out.parent / f".{out.name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        features = cpu_features()
        qat = _qat_retraining(cfg, run_dir, model, tokenizer, lines, parity_texts, resume) if cfg.qat else None
        ctx = ExportContext(cfg=cfg, model_dir=model_dir, model=model, tokenizer=tokenizer, task=task, staging=staging,
                            calib_texts=calib_texts, batches=batches, features=features, qat=qat)
        records = {spec.name: make_variant(spec, ctx) for spec in variants_to_make(cfg, features)}
        report = ExportReport(cpu=features, model=cfg.model, variants=records)
        atomic_write_text(staging / PARITY_FILE, report.model_dump_json(indent=2, exclude_none=True) + "\n")
        source = read_provenance(model_dir)
        for name, record in report.variants.items():
            if report.spec(name).has_folder:
                copy_sentence_modules(model_dir, staging / name)
                write_provenance(staging / name, stage="export", variant=name, source_model=str(model_dir),
                                 source=source, parity=record.model_dump(mode="json", exclude_none=True),
                                 export_config=to_plain(cfg))
                write_model_card(staging / name, final=out / name)
        _publish(staging, out, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report, cfg


def _publish(staging: Path, out: Path, report: ExportReport) -> None:
    """Swap the checked variants of ``staging`` into ``out``; folders this export did not make go (they would not
    match its fp32), and so do the QAT work folders of variants it did not retrain."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / ".old"
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    made = {record.folder for record in report.variants.values()}
    for folder in VARIANT_FOLDERS:
        if (out / folder).is_dir():
            if folder not in made:
                log.info("removing %s: this export did not produce it, so it would not match fp32", out / folder)
            (out / folder).rename(old / folder)
        if folder in made:
            (staging / folder).rename(out / folder)
    os.replace(staging / PARITY_FILE, out / PARITY_FILE)
    for name, work in QAT_WORK.items():
        if name not in report.variants:
            shutil.rmtree(out / work, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def _qat_retraining(cfg: ExportConfig, run_dir: RunDir, model, tokenizer, lines: list[str], parity_texts: list[str],
                    resume: bool) -> QatRetraining:
    """The retraining the QAT variants share: the relation loss against a frozen reference (the distilled student,
    or the original teacher), on the corpus lines less the held-out parity lines; each variant has its own work
    folder and checkpoint, and ``resume`` continues each one that has a checkpoint. The reference is loaded
    when the first QAT variant is built."""
    from compress.architectures import arch_spec, layer_list
    from export.qat import retrain

    distill = run_dir.stage(DISTILL)
    distill_cfg = run_dir.distill_config()
    spec = arch_spec(model.config.model_type)
    if cfg.qat_reference == "original" and (run_dir.student_dir / "trimmed_vocab.json").exists():
        raise UserError("this student has a trimmed vocabulary, so the original teacher reads other token ids: "
                        "use the default QAT reference (--teacher student)")
    held_out = set(parity_texts)
    train_lines = [line for line in lines if line not in held_out]
    if not train_lines:  # a corpus smaller than the parity sample: train on those lines too, and say so
        log.warning("QAT: the corpus is too small to hold out the parity lines; they are trained on as well")
        train_lines = list(parity_texts)

    @functools.cache
    def reference():
        """(model, its spec, its layer), loaded once."""
        if cfg.qat_reference == "student":
            return model, spec, len(layer_list(model, spec)) - 1
        from compress.teacher import load_teacher

        teacher = load_teacher(distill_cfg.teacher)
        return teacher.model, teacher.spec, distill["resolved"]["teacher_layer"] - 1

    def retrain_in(student, work: Path) -> dict[str, float]:
        ref, ref_spec, ref_layer = reference()
        resumes = resume and (work / "checkpoint.pt").exists()
        if not resumes:
            shutil.rmtree(work, ignore_errors=True)
        same_width = ref.config.hidden_size == model.config.hidden_size  # the embedding term compares vectors
        return retrain(student, ref, spec=spec, reference_spec=ref_spec, reference_layer=ref_layer,
                       tokenizer=tokenizer, lines=train_lines, relation_heads=distill["resolved"]["relation_heads"],
                       cfg=cfg.qat_train, out_dir=work, output_weight=cfg.qat_output_weight,
                       embedding_weight=cfg.qat_embedding_weight if same_width else 0.0,
                       max_length=distill_cfg.data.max_length, resume=resumes)

    def facts(metrics: dict[str, float]) -> dict[str, Any]:
        return {"qat_reference": cfg.qat_reference, "qat_steps": cfg.qat_train.steps, "qat_final_loss": metrics.get("loss")}

    return QatRetraining(retrain=retrain_in, work_dir=run_dir.qat_work_dir, facts=facts)
