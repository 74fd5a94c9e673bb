"""``compress distill``: task-agnostic MiniLMv2 relation distillation into a student of any shape."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from compress.architectures import layer_list
from compress.config import DistillConfig, to_plain
from compress.corpus import MixedSampler, expand_pattern, read_corpus
from compress.distributed import barrier, gather_objects, init_from_env, seed_everything
from compress.errors import UserError
from compress.qkv_capture import drop_layers_above, forward_to_qkv
from compress.relation_loss import relation_kd_loss
from compress.run_dir import RunDir, atomic_directory, atomic_write_text, library_versions, now, sha256_of
from compress.student import build_student, init_from_teacher_layers, student_config
from compress.teacher import (
    count_parameters, load_teacher, load_teacher_config, resolve_relation_heads, resolve_teacher_layer,
)
from compress.train_loop import CHECKPOINT, StepOutput, TrainingInterrupted, train
from compress.vocab_trim import (
    TRIMMED_VOCAB, choose_kept_ids, config_token_ids, count_pieces, trim_embeddings, trim_tokenizer,
)

log = logging.getLogger(__name__)
STAGE = "distill"


def _teacher_fingerprint(name: str) -> dict[str, Any]:
    """Path and hash of a local teacher's config and weights; the id alone for a hub model."""
    path = Path(name)
    if not path.is_dir():
        return {"id": name}
    files = [p for p in sorted(path.iterdir()) if p.name == "config.json" or p.suffix in (".safetensors", ".bin")]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_of(file).encode())
    return {"path": str(path.resolve()), "sha256": digest.hexdigest()}


def _params_fingerprint(model: torch.nn.Module) -> str:
    """A hash of all parameter values: equal on every rank after a correct data-parallel step."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def hidden_mse(student: torch.nn.Module, teacher: torch.nn.Module, ids: torch.Tensor, teacher_ids: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """Baseline objective: mean squared error between the student's last hidden states and the
    (truncated) teacher's output, over real tokens. ids, teacher_ids, mask [B, T]; hidden states [B, T, H]."""
    with torch.no_grad():
        target = teacher(input_ids=teacher_ids, attention_mask=mask).last_hidden_state
    hidden = student(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    return (((hidden.float() - target.float()) ** 2) * keep).sum() / (keep.sum() * hidden.shape[-1])


def trimmed_vocabulary(teacher, corpora, cfg: DistillConfig, folder: Path):
    """The student's tokenizer and kept ids (student id i = teacher id kept_ids[i]) for the pieces the
    corpora use; deterministic, so a resumed run recomputes the same ones."""
    lines = [line for corpus in corpora for line in corpus.lines]
    counts = count_pieces(teacher.tokenizer, lines)
    kept = choose_kept_ids(teacher.tokenizer, counts, min_count=cfg.student.trim_min_count,
                           keep_top=cfg.student.trim_keep_top)
    kept = sorted(set(kept) | config_token_ids(teacher.config))
    record = folder.parent / "kept_ids.json"  # a resumed run must rebuild the very same vocabulary
    if record.exists() and json.loads(record.read_text(encoding="utf-8")) != kept:
        raise UserError(f"the corpora give another trimmed vocabulary than when {folder.parent.parent} started "
                        "(were they edited?): restore them, or start a new --run-dir")
    folder.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(kept))
    return trim_tokenizer(teacher.tokenizer, kept, folder), kept


def check_fresh_or_resumable(run_dir: RunDir, resume: bool) -> None:
    """Refuse to overwrite an existing distillation, or to resume one that does not exist."""
    has_checkpoint = (run_dir.path / STAGE / CHECKPOINT).exists()
    if resume and not has_checkpoint:
        raise UserError(f"nothing to resume in {run_dir.path} (no {STAGE}/{CHECKPOINT}): run without --resume")
    if not resume and (has_checkpoint or (run_dir.path / "student").exists()):
        raise UserError(
            f"{run_dir.path} already holds a distillation: pass --resume to continue it, or choose a new --run-dir"
        )


def run(cfg: DistillConfig, run_dir: RunDir, *, resume: bool = False) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into a new student; writes ``student/``, ``distill/`` and the manifest."""
    if not cfg.teacher:
        raise UserError("no teacher given: pass --teacher (a model folder or Hugging Face id) or set teacher: in the config")
    if not cfg.data.corpora:
        raise UserError("no corpus given: pass --corpus (a text file, .jsonl or folder) or set data.corpora in the config")
    if cfg.train.batch_size % cfg.train.grad_accum:
        raise UserError(
            f"batch size {cfg.train.batch_size} is not divisible by grad_accum {cfg.train.grad_accum}: "
            "choose a batch size that is a multiple of train.grad_accum"
        )
    check_fresh_or_resumable(run_dir, resume)
    done = run_dir.stage(STAGE) if resume else None
    if done and done.get("status") == "complete" and done["metrics"].get("step", 0) >= cfg.train.steps:
        log.info("%s: the distillation is already complete (%d steps); nothing to do", run_dir.path, cfg.train.steps)
        return {key: done[key] for key in ("outputs", "metrics", "resolved")}
    ctx = init_from_env(cfg.train.device)
    seed_everything(cfg.train.seed + ctx.rank)

    # Everything that can be wrong with the input is checked before the teacher's weights are loaded.
    t_config, spec = load_teacher_config(cfg.teacher)
    t_cfg = t_config.to_dict()
    t_layers, t_hidden = t_cfg[spec.num_layers_key], t_cfg[spec.hidden_key]
    if cfg.loss.objective == "hidden_mse" and t_hidden != cfg.student.hidden:
        raise UserError(f"loss.objective=hidden_mse compares hidden states directly: student hidden "
                        f"{cfg.student.hidden} must equal the teacher's {t_hidden}")
    teacher_layer = resolve_teacher_layer(cfg.loss.teacher_layer, t_layers, spec)
    relation_heads = resolve_relation_heads(cfg.loss.relation_heads, t_hidden, cfg.student.hidden)
    s_config = student_config(t_config, spec, layers=cfg.student.layers, hidden=cfg.student.hidden,
                              heads=cfg.student.heads, intermediate_size=cfg.student.intermediate_size)
    # A glob pattern stands for one corpus per match, each with the pattern's weight.
    entries = [(path, c) for c in cfg.data.corpora for path in expand_pattern(c.path)]
    corpora = [read_corpus(path, c.text_field) for path, c in entries]
    sampler = MixedSampler(corpora, [c.weight for _, c in entries], cfg.data.sampling_alpha, cfg.train.seed)
    teacher = load_teacher(cfg.teacher, t_config)

    student = build_student(s_config, cfg.train.seed)
    if cfg.student.init_from_teacher_layers:
        init_from_teacher_layers(student, teacher.model, spec, cfg.student.init_from_teacher_layers)
    tokenizer, kept_ids = teacher.tokenizer, None
    if cfg.student.trim_vocab:
        tokenizer, kept_ids = trimmed_vocabulary(teacher, corpora, cfg, run_dir.path / STAGE / "tokenizer")
        trim_embeddings(student, kept_ids)
        log.info("vocabulary trimmed to the corpora: %d → %d pieces", t_cfg["vocab_size"], len(kept_ids))
    # Student ids → teacher ids (identity without trimming): the teacher reads the same pieces.
    to_teacher = torch.tensor(kept_ids, device=ctx.device) if kept_ids else None
    drop_layers_above(teacher.model, spec, teacher_layer - 1)
    teacher.model.to(ctx.device)
    student.to(ctx.device)
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.train.compile:
        # Compile whole layers below the ones whose forward is cut short by the Q/K/V hooks.
        for model, keep in ((teacher.model, teacher_layer - 1), (student, cfg.student.layers - 1)):
            for layer in layer_list(model, spec)[:keep]:
                layer.compile()

    micro_batch = cfg.train.batch_size // cfg.train.grad_accum
    s_last = cfg.student.layers - 1
    weights = [cfg.loss.weights.get(k, 1.0) for k in ("qq", "kk", "vv")]
    first_batch_hash = hashlib.sha256("\n".join(sampler.batch(micro_batch, 0, 0, ctx.rank)).encode()).hexdigest()

    def compute_loss(step: int, micro: int) -> StepOutput:
        texts = sampler.batch(micro_batch, step, micro, ctx.rank)
        enc = tokenizer(texts, padding=True, truncation=True, max_length=cfg.data.max_length, return_tensors="pt")
        ids, mask = enc["input_ids"].to(ctx.device), enc["attention_mask"].to(ctx.device)
        t_ids = ids if to_teacher is None else to_teacher[ids]
        if cfg.loss.objective == "hidden_mse":
            loss = hidden_mse(student, teacher.model, ids, t_ids, mask)
            return StepOutput(loss=loss, parts={}, tokens=int(mask.sum()))
        with torch.no_grad():
            t_qkv = forward_to_qkv(teacher.model, spec, teacher_layer - 1, t_ids, mask)
        s_qkv = forward_to_qkv(student, spec, s_last, ids, mask)
        loss, parts = relation_kd_loss(s_qkv, t_qkv, mask, relation_heads, weights)
        return StepOutput(loss=loss, parts={k: v.item() for k, v in parts.items()}, tokens=int(mask.sum()))

    resolved = {"teacher_layer": teacher_layer, "teacher_layers": t_layers, "relation_heads": relation_heads,
                "student_vocab": len(kept_ids) if kept_ids else t_cfg["vocab_size"],
                "relation_head_size": {"teacher": t_hidden // relation_heads, "student": cfg.student.hidden // relation_heads},
                "world_size": ctx.world_size, "device": str(ctx.device)}
    if ctx.is_main:
        run_dir.write_config(to_plain(cfg))
        run_dir.update_stage(
            STAGE, status="running", started=now(), config=to_plain(cfg), resolved=resolved, versions=library_versions(),
            inputs={"teacher": _teacher_fingerprint(cfg.teacher),
                    "corpora": [{"path": str(c.path), "sha256": sha256_of(c.path), **vars(c.stats)} for c in corpora]},
        )
    log.info("distilling %s layer %d/%d → student %d×%d (%d heads), %d relation heads, on %s ×%d",
             cfg.teacher, teacher_layer, t_layers, cfg.student.layers, cfg.student.hidden, cfg.student.heads,
             relation_heads, ctx.device, ctx.world_size)

    t0 = time.perf_counter()
    try:
        last = train(student, compute_loss, cfg.train, run_dir.path / STAGE, ctx, resume=resume, description="distill")
    except TrainingInterrupted as stop:
        if ctx.is_main:
            run_dir.update_stage(STAGE, status="interrupted", step=stop.step)
        raise
    except Exception:
        if ctx.is_main:
            run_dir.update_stage(STAGE, status="failed")
        raise
    wall = time.perf_counter() - t0

    fingerprints = gather_objects(_params_fingerprint(student), ctx)
    data_hashes = gather_objects(first_batch_hash, ctx)
    if len(set(fingerprints)) != 1:
        raise RuntimeError(f"data-parallel ranks ended with different weights: {fingerprints}")
    outputs: dict[str, Any] = {}
    if ctx.is_main:
        student_dir = run_dir.path / "student"
        with atomic_directory(student_dir) as tmp:
            student.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if kept_ids:
                record = {"kept_ids": kept_ids, "source": cfg.teacher, "min_count": cfg.student.trim_min_count,
                          "keep_top": cfg.student.trim_keep_top}
                (tmp / TRIMMED_VOCAB).write_text(json.dumps(record) + "\n", encoding="utf-8")
        outputs = {"student": str(student_dir), "metrics": str(run_dir.path / STAGE / "metrics.jsonl")}
        run_dir.update_stage(
            STAGE, status="complete", finished=now(), outputs=outputs,
            metrics={**last, "wall_s": round(wall, 1), "student_params": count_parameters(student),
                     "teacher_params_used": count_parameters(teacher.model)},
            ranks={"weights_sha256": fingerprints[0], "first_batch_sha256": data_hashes},
        )
        log.info("student written to %s (%s)", student_dir,
                 f"final loss {last['loss']:.4f}" if "loss" in last else "no training steps: the initial student")
    barrier(ctx)
    return {"outputs": outputs, "metrics": last, "resolved": resolved}
