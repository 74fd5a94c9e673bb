"""``compress finetune``: a classification head on the run's student (or its teacher, for reference).

The usual recipe: AdamW, linear warm-up and decay, a few epochs, the dev split scored after every epoch
and the best epoch kept. It runs on the shared training loop (``compress.train_loop``), so it shows
progress, checkpoints, stops cleanly on Ctrl-C and continues with ``--resume``. The result is a plain
``AutoModelForSequenceClassification`` folder, ``finetune/<name>/``, that ``compress export --model
<name>`` and ``compress bench`` take like any other.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.evaluate import classification_scores, headline
from bench.tasks import TaskSpec, load_task
from bench.torch_encoder import TorchEncoder
from compress.config import FinetuneConfig, TrainConfig, to_plain
from compress.distributed import DistContext, resolve_device, seed_everything
from compress.errors import UserError, first_line
from compress.run_dir import FINETUNE, RunDir, atomic_directory, atomic_write_text, library_versions, now
from compress.tracking import open_trackers, require_trackers
from compress.train_loop import CHECKPOINT, StepOutput, TrainingInterrupted, resolve_precision, train

log = logging.getLogger(__name__)
STAGE = FINETUNE


def source_model(cfg: FinetuneConfig, run_dir: RunDir) -> tuple[str, str]:
    """(model folder or id to start from, output name) for ``--model student|teacher|PATH``."""
    task_name = Path(cfg.task).stem
    if cfg.model == "student":
        folder = run_dir.student_dir
        if not folder.is_dir():
            raise UserError(f"{run_dir.path} has no student/: run {run_dir.distill_remedy()} first")
        return str(folder), cfg.name or task_name
    if cfg.model == "teacher":
        teacher = run_dir.teacher()
        if not teacher:
            raise UserError(f"{run_dir.path} has no distillation record, so no teacher: pass --model PATH instead")
        return teacher, cfg.name or f"{task_name}-teacher"
    if not Path(cfg.model).is_dir():
        raise UserError(f"--model {cfg.model} is neither student, teacher nor a model folder")
    return cfg.model, cfg.name or f"{task_name}-{Path(cfg.model).name}"


def recipe(cfg: FinetuneConfig, task: TaskSpec) -> dict[str, Any]:
    """The task's fine-tuning defaults with the command's choices on top."""
    merged = task.finetune.model_dump()
    for key in merged:
        value = getattr(cfg, key, None)
        if value is not None:
            merged[key] = value
    merged["max_length"] = cfg.max_length or task.max_length
    return merged


def load_classifier(source: str, labels: list[str]):
    """The source model with a fresh classification head for ``labels``, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, ignore_mismatched_sizes=True)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load {source} as a classifier ({first_line(err)})") from None
    return model, tokenizer


def train_labels(task: TaskSpec, rows: list[dict]) -> tuple[list[str], torch.Tensor]:
    """The labels of ``rows`` (sorted, as strings) and each row's label index, ``[N]`` int64."""
    labels = sorted({str(row[task.label_field]) for row in rows})
    return labels, torch.tensor([labels.index(str(row[task.label_field])) for row in rows])


def train_batch(tokenizer, texts: list[str], pairs: list[str] | None, index: list[int], max_length: int):
    """Rows ``index`` of ``texts`` (and ``pairs``) as one batch: padded to the longest, cut at ``max_length``;
    tensors ``[B, T]``."""
    return tokenizer([texts[i] for i in index], [pairs[i] for i in index] if pairs else None, padding=True,
                     truncation=True, max_length=max_length, return_tensors="pt")


def tracker_choice(cfg: FinetuneConfig, run_dir: RunDir) -> list[str]:
    """``report_to`` as given, else the run's distillation's ``train.report_to`` (none without a distillation)."""
    if cfg.report_to is not None:
        return cfg.report_to
    distill_cfg = run_dir.distill_config()
    return distill_cfg.train.report_to if distill_cfg else []


def run(cfg: FinetuneConfig, run_dir: RunDir, *, resume: bool = False) -> dict[str, Any]:
    """Fine-tune; writes ``finetune/<name>/`` (best dev epoch), its ``scores.json`` and the manifest."""
    task = load_task(cfg.task)
    if task.kind != "classification":
        raise UserError(f"task '{task.name}' is a {task.kind} task: fine-tuning needs a classification task")
    source, name = source_model(cfg, run_dir)
    out = run_dir.finetune_dir(name)
    work = out.with_name(f".{name}.work")
    if not resume and (out.exists() or (work / CHECKPOINT).exists()):
        raise UserError(f"{out} already exists (or is in progress): pass --resume to continue it, or --name to make another")
    if resume and not (work / CHECKPOINT).exists():
        if out.exists():
            log.info("%s is already fine-tuned; nothing to do", out)
            return json.loads((out / "scores.json").read_text(encoding="utf-8"))
        raise UserError(f"nothing to resume for {out} (no checkpoint): run without --resume")

    report_to = tracker_choice(cfg, run_dir)
    require_trackers(report_to, "report_to")
    r = recipe(cfg, task)
    train_rows, dev_rows = task.rows("train"), task.rows("dev")
    if r["max_train_examples"] and len(train_rows) > r["max_train_examples"]:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(train_rows), r["max_train_examples"], replace=False))
        train_rows = [train_rows[i] for i in keep]
    labels, label_ids = train_labels(task, train_rows)
    if len(labels) < 2:
        raise UserError(f"the train split of task '{task.name}' has {len(labels)} label(s): a classifier needs two or more")
    texts = task.texts(train_rows)
    pairs = task.texts(train_rows, task.text_pair_field) if task.text_pair_field else None

    device = resolve_device(cfg.device)
    ctx = DistContext(device=device)
    seed_everything(cfg.seed)
    model, tokenizer = load_classifier(source, labels)
    model.to(device)
    steps_per_epoch = math.ceil(len(train_rows) / r["batch_size"])
    total = steps_per_epoch * r["epochs"]
    precision = resolve_precision(cfg.precision, device)
    train_cfg = TrainConfig(steps=total, batch_size=r["batch_size"], lr=r["lr"], weight_decay=cfg.weight_decay,
                            warmup_steps=int(r["warmup_ratio"] * total), seed=cfg.seed, device=cfg.device,
                            checkpoint_every=steps_per_epoch, log_every=min(10, steps_per_epoch), eps=1e-8,
                            precision=precision, report_to=report_to)

    def compute_loss(step: int, micro: int, _batch) -> StepOutput:
        epoch, position = divmod(step, steps_per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_rows))
        index = order[position * r["batch_size"] : (position + 1) * r["batch_size"]].tolist()
        batch = train_batch(tokenizer, texts, pairs, index, r["max_length"])
        tokens = int(batch["attention_mask"].sum())
        loss = model(**batch.to(device), labels=label_ids[index].to(device)).loss
        return StepOutput(loss=loss, parts={}, tokens=tokens)

    best_path = work / "best.json"

    def score_dev(step: int) -> None:
        """After each epoch: dev scores; the best epoch's weights go to ``work/best``."""
        encoder = TorchEncoder(source, model=model, tokenizer=tokenizer, device=str(device),
                               max_length=r["max_length"], name=name)
        encoder.labels = labels
        scores = classification_scores(task, encoder, split="dev")
        value = headline(scores, task)
        best = json.loads(best_path.read_text()) if best_path.exists() else {"value": -1.0}
        history = best.get("history", []) + [{"epoch": step // steps_per_epoch, "step": step, task.headline: value}]
        log.info("epoch %d: dev %s %.4f", step // steps_per_epoch, task.headline, value)
        if value > best["value"]:
            with atomic_directory(work / "best") as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            best = {"value": value, "step": step, "epoch": step // steps_per_epoch}
        atomic_write_text(best_path, json.dumps({**best, "history": history}, indent=2) + "\n")

    run_dir.update_stage(f"{STAGE}/{name}", status="running", started=now(), task=task.name, source=source,
                         config=to_plain(cfg), recipe=r, versions=library_versions(), resolved={"precision": precision},
                         data={"train": len(train_rows), "dev": len(dev_rows), "labels": labels})
    log.info("fine-tuning %s on %s: %d examples, %d epochs of %d steps, lr %g, %s on %s", source, task.name,
             len(train_rows), r["epochs"], steps_per_epoch, r["lr"], precision, device.type)
    params = {"finetune": to_plain(cfg), "recipe": r, "train": to_plain(train_cfg), "task": task.name, "source": source,
              "data": {"train": len(train_rows), "dev": len(dev_rows), "labels": json.dumps(labels)}}
    trackers = open_trackers(report_to, run_dir.path, f"finetune-{name}", params=params, key="report_to")
    try:
        train(model, compute_loss, train_cfg, work, ctx, resume=resume, description=f"finetune {name}",
              after_checkpoint=lambda step: score_dev(step) if step % steps_per_epoch == 0 else None, trackers=trackers)
    except TrainingInterrupted:
        run_dir.update_stage(f"{STAGE}/{name}", status="interrupted")
        raise

    best = json.loads(best_path.read_text())
    test_scores = classification_scores(task, TorchEncoder(work / "best", device=str(device), max_length=r["max_length"]))
    result = {"task": task.name, "model": name, "source": source, "dev": {task.headline: best["value"], "epoch": best["epoch"],
              "history": best["history"]}, "test": test_scores}
    atomic_write_text(work / "best" / "scores.json", json.dumps(result, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    (work / "best").rename(out)
    shutil.rmtree(work)
    run_dir.update_stage(f"{STAGE}/{name}", status="complete", finished=now(), outputs={"model": str(out)},
                         metrics={"dev_" + task.headline: best["value"], **{
                             f"test_{s['metric']}": s["value"] for s in test_scores if s["language"] is None}})
    return result
