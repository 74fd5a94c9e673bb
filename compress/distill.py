"""``compress distill``: task-agnostic MiniLMv2 relation distillation into a student of any shape."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.architectures import ArchSpec, layer_list
from compress.config import DistillConfig, to_plain

from compress.assets.cache import cache_dir
from compress.corpus import MixedSampler, expand_pattern
from compress.distributed import DistContext, barrier, gather_objects, init_from_env, seed_everything, shutdown
from compress.distill_step import RelationDistillation
from compress.errors import UserError
from compress.loader import ShardBatches, batches, make_loader, pad_rows, resolve_workers
from compress.prepare_data import (
    PrepareSettings, TokenizerSpec, default_workers, piece_counts, resolve_corpus, text_sources, tokenizer_spec,
)
from compress.numerics import run_numerics
from compress.positions import max_sequence_length, state_real_limit
from compress.qkv_capture import drop_layers_above, forward_to_qkv
from compress.relation_loss import resolve_relation_kernel
from compress.run_dir import (
    RunDir, atomic_directory, atomic_write_text, library_versions, now, sha256_of, weights_are_whole, write_provenance,
)
from compress.sentence_modules import teacher_pooling, write_sentence_modules
from compress.pruning import PrunePlan, check_prunable, evenly_spaced_layers, init_from_teacher
from compress.student import build_student, student_config
from compress.teacher import (
    Teacher, count_parameters, load_teacher, load_teacher_config, load_tokenizer, resolve_relation_heads,
    resolve_teacher_layer,
)
from compress.token_shards import TokenCorpus
from compress.tracking import open_trackers, require_trackers
from compress.train_loop import CHECKPOINT, StepOutput, TrainingInterrupted, resolve_precision, train
from compress.vocab_trim import TRIMMED_VOCAB, model_kept_ids, trim_embeddings, trim_tokenizer

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


def hidden_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Baseline objective: mean squared error between the student's last hidden states and the (truncated)
    teacher's output, over real tokens. hidden, target [B, T, H]; mask [B, T]."""
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    return (((hidden.float() - target.float()) ** 2) * keep).sum() / (keep.sum() * hidden.shape[-1])


def trimmed_vocabulary(teacher_tokenizer, teacher_config, counts, cfg: DistillConfig, folder: Path):
    """The student's tokenizer and kept ids (student id i = teacher id kept_ids[i]) for the pieces the
    corpora use (``counts``: teacher id → occurrences); deterministic, so a resumed run recomputes the same ones."""
    kept = model_kept_ids(teacher_tokenizer, teacher_config, counts, min_count=cfg.student.trim_min_count,
                          keep_top=cfg.student.trim_keep_top)
    record = folder.parent / "kept_ids.json"  # a resumed run must rebuild the very same vocabulary
    if record.exists() and json.loads(record.read_text(encoding="utf-8")) != kept:
        raise UserError(f"the corpora give another trimmed vocabulary than when {folder.parent.parent} started "
                        "(were they edited?): restore them, or start a new --run-dir")
    folder.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(kept))
    return trim_tokenizer(teacher_tokenizer, kept, folder), kept


def prepare_settings(cfg: DistillConfig) -> PrepareSettings:
    return PrepareSettings(max_length=cfg.data.max_length, long_lines=cfg.data.long_lines, max_bad_share=cfg.data.max_bad_share)


def token_corpora(cfg: DistillConfig, spec: TokenizerSpec, ctx: DistContext, *, raw: bool = False) -> tuple[list[TokenCorpus], list[float]]:
    """The run's corpora as token shards, with their mixing weights; raw corpora are prepared into the
    cache first, by one process per machine while the others wait. ``raw=True``: prepare from the text
    behind prepared folders too (a trimmed student's tokenizer reads the text anew)."""
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else cache_dir() / "prepared"
    workers = default_workers() if cfg.data.prepare_workers == "auto" else cfg.data.prepare_workers

    def resolve() -> tuple[list[TokenCorpus], list[float]]:
        corpora, weights = [], []
        for entry in cfg.data.corpora:
            for path in expand_pattern(entry.path):  # a glob pattern: one corpus per match, each with its weight
                for source in (text_sources(path) if raw else [path]):
                    settings = prepare_settings(cfg)
                    settings.text_field = entry.text_field
                    found = resolve_corpus(source, spec, settings, teacher=str(cfg.teacher), cache=cache, workers=workers)
                    corpora += found
                    weights += [entry.weight] * len(found)
        return corpora, weights

    if ctx.local_rank == 0:
        result = resolve()
    barrier(ctx)
    if ctx.local_rank != 0:
        result = resolve()
    return result


def corpus_record(corpus: TokenCorpus) -> dict[str, Any]:
    """What the manifest says of one corpus: where its shards are, its input's fingerprint and its counts."""
    meta = corpus.meta
    return {"path": meta["source"]["path"], "prepared": str(corpus.folder), "fingerprint": meta["source"]["fingerprint"],
            "sequences": len(corpus), "tokens": corpus.tokens, **meta["stats"]}


class StudentForward(torch.nn.Module):
    """The student as DDP sees it: ``forward(ids, mask)`` → Q, K, V ``[B, T, H]`` of layer ``layer`` (the
    forward stops there, inside the wrapped call, so DDP's bookkeeping sees an ordinary forward), or the
    last hidden states ``[B, T, H]`` when ``layer`` is None."""

    def __init__(self, student: torch.nn.Module, spec, layer: int | None):
        super().__init__()
        self.student, self.spec, self.layer = student, spec, layer

    def forward(self, ids: torch.Tensor, mask: torch.Tensor):
        if self.layer is None:
            return self.student(input_ids=ids, attention_mask=mask).last_hidden_state
        return forward_to_qkv(self.student, self.spec, self.layer, ids, mask)


# What a resume may change: how long the run goes on, how often it logs and saves, where it runs and how
# its data is fed. Everything else shapes the weights, so a resume with another value is refused.
RESUMABLE = frozenset({"train.steps", "train.log_every", "train.checkpoint_every", "train.device",
                       "train.loader_workers", "train.relation_kernel", "train.compile", "train.deterministic", "train.report_to",
                       "data.prepare_workers", "data.cache_dir"})


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "weights":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resume_config(run_dir: RunDir, cfg: DistillConfig) -> dict[str, list]:
    """The keys a resume changes ({key: [old, new]}); a one-line refusal naming every change that would
    alter the weights (anything outside RESUMABLE). Runs before anything is written."""
    from compress.config import build_config, load_yaml

    stored = build_config(DistillConfig, base=load_yaml(run_dir.config_path), source=str(run_dir.config_path))
    old, new = _flat(to_plain(stored)), _flat(to_plain(cfg))
    changed = {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE}
    if refused:
        listed = "; ".join(f"{k}: {o!r} → {n!r}" for k, (o, n) in refused.items())
        raise UserError(f"--resume cannot change what {run_dir.path} was started with ({listed}): resume without "
                        f"these changes (only {', '.join(sorted(RESUMABLE))} may change), or start a new --run-dir")
    return changed


def check_same_inputs(run_dir: RunDir, teacher: dict[str, Any], corpora: list[dict[str, Any]]) -> None:
    """On resume: the teacher's weights and every corpus must be the ones the run started with."""
    started = (run_dir.stage(STAGE) or {}).get("inputs")
    if not started:
        return
    if started["teacher"] != teacher:
        raise UserError(f"the teacher's files changed since {run_dir.path} started: restore them, or start a new --run-dir")
    before = [(c["path"], c.get("fingerprint", {}).get("sha256")) for c in started["corpora"]]
    now_ = [(c["path"], c["fingerprint"]["sha256"]) for c in corpora]
    if before != now_:
        moved = [p for (p, f), (_, g) in zip(before, now_) if f != g] or [p for p, _ in now_]
        raise UserError(f"corpus {', '.join(moved)} changed since {run_dir.path} started, so resuming would not read "
                        "the same data: restore it, or start a new --run-dir")


def check_fresh_or_resumable(run_dir: RunDir, resume: bool) -> None:
    """Refuse to overwrite an existing distillation, or to resume one that does not exist."""
    has_checkpoint = (run_dir.distill_dir / CHECKPOINT).exists()
    if resume and not has_checkpoint:
        raise UserError(f"nothing to resume in {run_dir.path} (no {STAGE}/{CHECKPOINT}): run without --resume")
    if not resume and (has_checkpoint or run_dir.student_dir.exists()):
        raise UserError(
            f"{run_dir.path} already holds a distillation: pass --resume to continue it, or choose a new --run-dir"
        )


def run(cfg: DistillConfig, run_dir: RunDir, *, resume: bool = False) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into a new student; writes ``student/``, ``distill/`` and the manifest.

    The recipe, top to bottom: check the inputs (before any weights load), set up the data, set up the models,
    set up the step, train, save. Each is one function below.
    """
    if not cfg.teacher:
        raise UserError("no teacher given: pass --teacher (a model folder or Hugging Face id) or set teacher: in the config")
    if not cfg.data.corpora:
        raise UserError("no corpus given: pass --corpus (a text file, .jsonl or folder) or set data.corpora in the config")
    if cfg.train.batch_size % cfg.train.grad_accum:
        raise UserError(
            f"batch size {cfg.train.batch_size} is not divisible by grad_accum {cfg.train.grad_accum}: "
            "choose a batch size that is a multiple of train.grad_accum"
        )
    ctx = init_from_env(cfg.train.device)
    try:
        with run_dir.locked("compress distill", enabled=ctx.is_main):
            check_fresh_or_resumable(run_dir, resume)
            changed = check_resume_config(run_dir, cfg) if resume else {}
            done = run_dir.stage(STAGE) if resume else None
            if done and done.get("status") == "complete" and done["metrics"].get("step", 0) >= cfg.train.steps:
                if weights_are_whole(run_dir.student_dir):
                    log.info("%s: the distillation is already complete (%d steps); nothing to do", run_dir.path,
                             cfg.train.steps)
                    return {key: done[key] for key in ("outputs", "metrics", "resolved")}
                log.warning("%s is damaged: rebuilding it from %s", run_dir.student_dir, run_dir.distill_dir / CHECKPOINT)
            return _distill(cfg, run_dir, ctx, resume=resume, changed=changed)
    finally:
        shutdown(ctx)


@dataclass
class Plan:
    """What the config resolves to before any weights load: the teacher's config and family, the layer and
    relation heads the loss compares, the student's config."""

    teacher_config: Any
    spec: ArchSpec
    teacher_layers: int
    teacher_hidden: int
    teacher_layer: int  # 1-based
    relation_heads: int
    student_config: Any
    longest: int | None  # the teacher's position limit
    kernel: str  # the relation loss's implementation
    init_layers: list[int] | None = None  # student.init=teacher: the teacher layers (1-based) it starts from


@dataclass
class Data:
    """The corpora as token shards with their mixing weights, the tokenizer that reads them, and the manifest's
    record of the inputs; ``id_map`` renumbers stored teacher ids for a trimmed student (None: as stored)."""

    corpora: list[TokenCorpus]
    weights: list[float]
    tokenizer: Any
    inputs: dict[str, Any]
    kept_ids: list[int] | None = None
    id_map: np.ndarray | None = None
    pruning: PrunePlan | None = None  # how student.init=teacher cut the student out of the teacher


def check_inputs(cfg: DistillConfig, ctx: DistContext) -> Plan:
    """Everything that can be wrong with the input, checked before the teacher's weights are loaded."""
    require_trackers(cfg.train.report_to, "train.report_to")
    t_config, spec = load_teacher_config(cfg.teacher)
    t_cfg = t_config.to_dict()
    t_layers, t_hidden = t_cfg[spec.num_layers_key], t_cfg[spec.hidden_key]
    if cfg.loss.objective == "hidden_mse" and t_hidden != cfg.student.hidden:
        raise UserError(f"loss.objective=hidden_mse compares hidden states directly: student hidden "
                        f"{cfg.student.hidden} must equal the teacher's {t_hidden}")
    longest = max_sequence_length(t_config)
    if longest is not None and cfg.data.max_length > longest:
        raise UserError(f"--max-length {cfg.data.max_length} is longer than the teacher's {longest} positions: "
                        f"pass --max-length {longest} or less")
    teacher_layer = resolve_teacher_layer(cfg.loss.teacher_layer, t_layers, spec)
    relation_heads = resolve_relation_heads(cfg.loss.relation_heads, t_hidden, cfg.student.hidden)
    s_config = student_config(t_config, spec, layers=cfg.student.layers, hidden=cfg.student.hidden,
                              heads=cfg.student.heads, intermediate_size=cfg.student.intermediate_size)
    kernel = resolve_relation_kernel(cfg.train.relation_kernel, ctx.device)
    init_layers = None
    if cfg.student.starts_from == "teacher":
        init_layers = cfg.student.init_from_teacher_layers or evenly_spaced_layers(t_layers, cfg.student.layers)
        check_prunable(t_config, s_config, spec, init_layers)
    return Plan(t_config, spec, t_layers, t_hidden, teacher_layer, relation_heads, s_config, longest, kernel, init_layers)


def calibration_batches(corpora: list[TokenCorpus], count: int, pad_id: int, seed: int,
                        batch_size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` sequences drawn evenly from the token shards (seeded; random access, so memory does not grow
    with the corpus), padded into batches of (input ids [B, T], attention mask [B, T])."""
    rng = np.random.default_rng(seed)
    sizes = [len(c) for c in corpora]
    shares = np.floor(np.array(sizes) / max(sum(sizes), 1) * count).astype(int)
    rows = []
    for corpus, share in zip(corpora, np.maximum(shares, 1)):
        picks = rng.choice(len(corpus), size=min(int(share), len(corpus)), replace=False)
        rows += [corpus[int(i)] for i in np.sort(picks)]
    return [pad_rows(rows[i : i + batch_size], pad_id) for i in range(0, len(rows), batch_size)]


def setup_data(cfg: DistillConfig, run_dir: RunDir, ctx: DistContext, *, resume: bool) -> Data:
    """The corpora, prepared into token shards with the teacher's tokenizer (once, cached), and their record."""
    tokenizer = load_tokenizer(cfg.teacher)
    corpora, weights = token_corpora(cfg, tokenizer_spec(tokenizer), ctx)
    inputs = {"teacher": _teacher_fingerprint(cfg.teacher), "corpora": [corpus_record(c) for c in corpora]}
    if resume:
        check_same_inputs(run_dir, inputs["teacher"], inputs["corpora"])
    return Data(corpora, weights, tokenizer, inputs)


def setup_models(cfg: DistillConfig, plan: Plan, data: Data, run_dir: RunDir, ctx: DistContext,
                 precision: str) -> tuple[Teacher, torch.nn.Module, Data]:
    """The frozen teacher (layers above the compared one deleted; its Linear weights in bf16 once, not cast
    every step, when the run is bf16) and the student, on the device. With ``student.trim_vocab`` the student
    gets the corpora's vocabulary, and the data its new tokenizer (and, where pieces were dropped, new shards)."""
    teacher = load_teacher(cfg.teacher, plan.teacher_config, data.tokenizer)
    student = build_student(plan.student_config, cfg.train.seed)
    if plan.init_layers:
        calibration = None
        if cfg.student.prune_criterion == "activation":
            pad_id = data.tokenizer.pad_token_id if data.tokenizer.pad_token_id is not None else 0
            calibration = calibration_batches(data.corpora, cfg.student.calibration_sequences, pad_id, cfg.train.seed)
        data = replace(data, pruning=init_from_teacher(student, teacher.model, plan.spec, teacher_layers=plan.init_layers,
                                                       criterion=cfg.student.prune_criterion, batches=calibration))
    if cfg.student.trim_vocab:
        t_spec = tokenizer_spec(data.tokenizer)
        counts = piece_counts(data.corpora, t_spec)
        tokenizer, kept_ids = trimmed_vocabulary(teacher.tokenizer, teacher.config, counts, cfg,
                                                 run_dir.distill_dir / "tokenizer")
        trim_embeddings(student, kept_ids)
        data = replace(data, tokenizer=tokenizer, kept_ids=kept_ids)
        if set(counts) <= set(kept_ids):  # every piece the text uses is kept: the same segmentation, renumbered
            data.id_map = np.zeros(t_spec.vocab_size, dtype=np.int64)
            data.id_map[kept_ids] = np.arange(len(kept_ids))
        else:  # pieces were dropped: the student's own tokenizer reads the text anew
            data.corpora, data.weights = token_corpora(cfg, tokenizer_spec(tokenizer), ctx, raw=True)
        log.info("vocabulary trimmed to the corpora: %d → %d pieces", plan.teacher_config.vocab_size, len(kept_ids))
    drop_layers_above(teacher.model, plan.spec, plan.teacher_layer - 1)
    if precision == "bf16":
        cast_linear_weights(teacher.model, torch.bfloat16)
    teacher.model.to(ctx.device)
    student.to(ctx.device)
    if cfg.train.compile:
        # Compile whole layers below the ones whose forward is cut short by the Q/K/V hooks.
        for model, keep in ((teacher.model, plan.teacher_layer - 1), (student, cfg.student.layers - 1)):
            for layer in layer_list(model, plan.spec)[:keep]:
                layer.compile()
    return teacher, student, data


def _init_summary(pruning: PrunePlan | None) -> dict[str, Any]:
    """How the student started, for the manifest (the kept channels, heads and neurons are in its provenance)."""
    if pruning is None:
        return {"kind": "random"}
    return {"kind": "teacher", "teacher_layers": pruning.teacher_layers, "criterion": pruning.criterion,
            "calibration": pruning.calibration, "hidden": len(pruning.hidden), "heads": len(pruning.heads[0]),
            "neurons": len(pruning.neurons[0])}


def cast_linear_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store every Linear's weight and bias in ``dtype``: what bf16 autocast would cast them to on each call,
    done once (embeddings and LayerNorms, which autocast runs in fp32, stay as they are)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)


@dataclass
class Step:
    """One micro-batch's loss and where its batches come from."""

    compute_loss: Any  # (step, micro, batch) → StepOutput
    loader: Any  # start step → iterator of micro-batches
    forward: torch.nn.Module  # the student as far as the loss needs it (DDP-wrapped when distributed)
    loader_workers: int
    first_batch_hash: str


def setup_step(cfg: DistillConfig, plan: Plan, data: Data, teacher: Teacher, student: torch.nn.Module,
               ctx: DistContext) -> Step:
    """The loss of one micro-batch (teacher to its layer's Q/K/V under no_grad, student to its last Q/K/V, the
    relation loss) and the DataLoader over the shards."""
    micro_batch = cfg.train.batch_size // cfg.train.grad_accum
    weights = [cfg.loss.weights.get(k, 1.0) for k in ("qq", "kk", "vv")]
    sampler = MixedSampler([len(c) for c in data.corpora], data.weights, cfg.data.sampling_alpha, cfg.train.seed)
    pad_id = data.tokenizer.pad_token_id if data.tokenizer.pad_token_id is not None else 0
    pad_to = cfg.data.max_length if cfg.data.pad_to_max_length else None

    def dataset(start: int) -> ShardBatches:
        return ShardBatches(data.corpora, sampler, micro_batch, cfg.train.grad_accum, ctx.rank, start,
                            cfg.train.steps, pad_id, data.id_map, pad_to=pad_to)

    first_batch_hash = hashlib.sha256(b"".join(row.tobytes() for row in dataset(0).rows(0, 0))).hexdigest()
    loader_workers = resolve_workers(cfg.train.loader_workers, ctx.device)

    def loader(start: int):
        return batches(make_loader(dataset(start), loader_workers, ctx.device))

    # Student ids → teacher ids (identity without trimming): the teacher reads the same pieces.
    to_teacher = torch.tensor(data.kept_ids, device=ctx.device) if data.kept_ids else None
    distillation = RelationDistillation(teacher.model, plan.spec, plan.teacher_layer - 1, plan.relation_heads,
                                        weights, to_teacher, kernel=plan.kernel)
    relations = cfg.loss.objective == "relations"
    forward = StudentForward(student, plan.spec, cfg.student.layers - 1 if relations else None)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # The relation loss never reaches the student's last-layer FFN and pooler (nor hidden_mse the pooler).
        # The set of parameters that get gradients is the same every step, so DDP learns it once (static_graph)
        # instead of walking the autograd graph for unused parameters each step. With gradient accumulation
        # static_graph fails under no_sync (a reducer assertion, torch 2.13), so there DDP walks the graph.
        static = cfg.train.grad_accum == 1
        forward = DistributedDataParallel(forward, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                          broadcast_buffers=False, static_graph=static, find_unused_parameters=not static)

    def compute_loss(step: int, micro: int, batch: dict[str, Any]) -> StepOutput:
        ids = batch["input_ids"].to(ctx.device, non_blocking=True)
        mask = batch["attention_mask"].to(ctx.device, non_blocking=True)
        if not relations:
            with torch.no_grad():
                target = teacher.model(input_ids=distillation.teacher_ids(ids), attention_mask=mask).last_hidden_state
            return StepOutput(loss=hidden_mse(forward(ids, mask), target, mask), parts={}, tokens=batch["tokens"])
        loss, parts = distillation.loss(forward, ids, mask)
        return StepOutput(loss=loss, parts=parts, tokens=batch["tokens"])

    return Step(compute_loss, loader, forward, loader_workers, first_batch_hash)


def tracking_params(cfg: DistillConfig, resolved: dict[str, Any], data: Data) -> dict[str, Any]:
    """What the trackers record once: the resolved config and the provenance (teacher, corpora, versions)."""
    corpora = [{k: c[k] for k in ("path", "fingerprint", "sequences", "tokens")} for c in data.inputs["corpora"]]
    return {**to_plain(cfg), "resolved": resolved, "inputs": {"teacher": data.inputs["teacher"], "corpora": corpora},
            "versions": library_versions()}


def _distill(cfg: DistillConfig, run_dir: RunDir, ctx: DistContext, *, resume: bool,
             changed: dict[str, list]) -> dict[str, Any]:
    seed_everything(cfg.train.seed + ctx.rank)
    plan = check_inputs(cfg, ctx)
    precision = resolve_precision(cfg.train.precision, ctx.device)
    data = setup_data(cfg, run_dir, ctx, resume=resume)
    teacher, student, data = setup_models(cfg, plan, data, run_dir, ctx, precision)
    step = setup_step(cfg, plan, data, teacher, student, ctx)
    resolved = {"teacher_layer": plan.teacher_layer, "teacher_layers": plan.teacher_layers,
                "relation_heads": plan.relation_heads,
                "student_vocab": len(data.kept_ids) if data.kept_ids else plan.teacher_config.vocab_size,
                "relation_head_size": {"teacher": plan.teacher_hidden // plan.relation_heads,
                                       "student": cfg.student.hidden // plan.relation_heads},
                "world_size": ctx.world_size, "device": str(ctx.device), "loader_workers": step.loader_workers,
                "precision": precision, "relation_kernel": plan.kernel, "deterministic": cfg.train.deterministic,
                "init": _init_summary(data.pruning)}
    if ctx.is_main:
        run_dir.write_config(to_plain(cfg))
        record = {"status": "running", "config": to_plain(cfg), "resolved": resolved, "versions": library_versions(),
                  "inputs": data.inputs}
        if resume:
            resumes = (run_dir.stage(STAGE) or {}).get("resumes", [])
            record["resumes"] = [*resumes, {"at": now(), "changed": changed}]
        else:
            record["started"] = now()
        run_dir.update_stage(STAGE, **record)
    log.info("distilling %s layer %d/%d → student %d×%d (%d heads), %d relation heads (%s kernel), on %s ×%d, %s",
             cfg.teacher, plan.teacher_layer, plan.teacher_layers, cfg.student.layers, cfg.student.hidden,
             cfg.student.heads, plan.relation_heads, plan.kernel, ctx.device, ctx.world_size, precision)

    trackers = open_trackers(cfg.train.report_to, run_dir.path, STAGE, params=tracking_params(cfg, resolved, data))
    t0 = time.perf_counter()
    try:
        train_cfg = cfg.train.model_copy(update={"precision": precision})
        with run_numerics(ctx.device, deterministic=cfg.train.deterministic):
            last = train(student, step.compute_loss, train_cfg, run_dir.distill_dir, ctx, batches=step.loader,
                         no_sync=getattr(step.forward, "no_sync", None), resume=resume, description="distill",
                         trackers=trackers)
    except TrainingInterrupted as stop:
        if ctx.is_main:
            run_dir.update_stage(STAGE, status="interrupted", step=stop.step)
        raise
    except Exception:
        if ctx.is_main:
            run_dir.update_stage(STAGE, status="failed")
        raise
    wall = time.perf_counter() - t0
    return save_student(cfg, plan, data, teacher, student, run_dir, ctx, last=last, wall=wall, resolved=resolved,
                        first_batch_hash=step.first_batch_hash)


def save_student(cfg: DistillConfig, plan: Plan, data: Data, teacher: Teacher, student: torch.nn.Module,
                 run_dir: RunDir, ctx: DistContext, *, last: dict, wall: float, resolved: dict,
                 first_batch_hash: str) -> dict[str, Any]:
    """Check that every rank ended with the same weights, then write ``student/`` (built aside, then swapped in)
    with its tokenizer, sentence-transformers modules and provenance, and close the manifest's stage."""
    fingerprints = gather_objects(_params_fingerprint(student), ctx)
    data_hashes = gather_objects(first_batch_hash, ctx)
    if len(set(fingerprints)) != 1:
        raise RuntimeError(f"data-parallel ranks ended with different weights: {fingerprints}")
    outputs: dict[str, Any] = {}
    if ctx.is_main:
        student_dir = run_dir.student_dir
        with atomic_directory(student_dir) as tmp:
            student.save_pretrained(tmp)
            state_real_limit(data.tokenizer, student.config)  # not the 1e30 of a teacher saved without one
            data.tokenizer.save_pretrained(tmp)
            pooling = teacher_pooling(cfg.teacher)  # SentenceTransformer(student/) loads it with the teacher's pooling
            write_sentence_modules(tmp, hidden=cfg.student.hidden, pooling=pooling,
                                   max_seq_length=pooling["max_seq_length"] or plan.longest or cfg.data.max_length)
            write_provenance(tmp, stage=STAGE, teacher=str(cfg.teacher), teacher_fingerprint=data.inputs["teacher"],
                             teacher_layer=plan.teacher_layer, relation_heads=plan.relation_heads,
                             steps=last.get("step", 0), final_loss=last.get("loss"),
                             corpora=[{k: c[k] for k in ("path", "fingerprint", "sequences", "tokens")}
                                      for c in data.inputs["corpora"]],
                             resolved=resolved, config=to_plain(cfg),
                             init=data.pruning.record() if data.pruning else {"kind": "random", "seed": cfg.train.seed})
            if data.kept_ids:
                record = {"kept_ids": data.kept_ids, "source": cfg.teacher, "min_count": cfg.student.trim_min_count,
                          "keep_top": cfg.student.trim_keep_top}
                (tmp / TRIMMED_VOCAB).write_text(json.dumps(record) + "\n", encoding="utf-8")
            from compress.model_card import write_model_card

            write_model_card(tmp, final=student_dir)  # README.md: Hub metadata, provenance, loading lines
        outputs = {"student": str(student_dir), "metrics": str(run_dir.distill_dir / "metrics.jsonl")}
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
