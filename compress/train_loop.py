"""The one training loop, shared by distillation and quantization-aware retraining.

Written out in full (no callback engine): AdamW with linear warm-up and decay, gradient accumulation,
clipping, optional bf16 autocast, a data-parallel gradient average, metrics as JSON lines, atomic
checkpoints that make ``resume`` exact, Ctrl-C that saves and exits, and a stop on a NaN/inf loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from compress.config import TrainConfig
from compress.distributed import (
    DistContext, average_gradients, barrier, gather_objects, rng_state, set_rng_state, sum_over_ranks,
)
from compress.progress import StepProgress
from compress.run_dir import atomic_write_text

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


@dataclass
class StepOutput:
    """What one micro-batch contributes: the loss to backpropagate, named parts to log, tokens seen."""

    loss: torch.Tensor
    parts: dict[str, float]
    tokens: int


class TrainingInterrupted(Exception):
    """Ctrl-C: a checkpoint was saved at ``step``."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted after step {step}; checkpoint saved in {checkpoint}: continue with --resume")
        self.step = step


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def warmup_steps(cfg: TrainConfig) -> int:
    """``auto``: the paper's 4,000 warm-up steps, scaled to 5% for runs shorter than 80,000 steps."""
    if cfg.warmup_steps == "auto":
        return min(4000, math.ceil(0.05 * cfg.steps))
    return cfg.warmup_steps


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """LR multiplier: 0 → 1 over ``warmup`` steps, then linearly to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights (1-D tensors) get no weight decay, as in BERT.

    The fused implementation is used where this torch has it for the device: on CPU it updates a
    250k-row multilingual embedding table about 12× faster than the default loop.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=True)
    except (RuntimeError, TypeError):  # an older torch, or a device without the fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast when asked for (``auto`` = bf16 on CUDA, fp32 on CPU); a no-op otherwise."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, rngs: list) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "data_position": step, "rng": rngs}, tmp)
    os.replace(tmp, path)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def train(
    model: torch.nn.Module,
    compute_loss: Callable[[int, int], StepOutput],
    cfg: TrainConfig,
    out_dir: Path,
    ctx: DistContext,
    *,
    resume: bool = False,
    description: str = "train",
    dropout: bool = True,
    after_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Run ``cfg.steps`` optimiser steps; ``compute_loss(step, micro)`` builds one micro-batch's loss.

    Writes ``out_dir/metrics.jsonl`` and ``out_dir/checkpoint.pt`` (main rank). Returns the last
    logged metrics. Raises TrainingInterrupted on Ctrl-C and TrainingDiverged on a NaN/inf loss.
    ``dropout=False`` trains in eval mode (QAT: the graph that will be deployed has no dropout).
    ``after_checkpoint(step)`` runs on every rank after each regular checkpoint (fine-tuning scores
    the dev split there); the model is put back in training mode afterwards.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, metrics_path = out_dir / CHECKPOINT, out_dir / METRICS
    optimizer = make_optimizer(model, cfg)
    warmup = warmup_steps(cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, cfg.steps))
    params = [p for p in model.parameters() if p.requires_grad]

    start = 0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=ctx.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ctx.rank < len(state["rng"]):  # a resume on more ranks than saved starts their RNGs afresh
            set_rng_state(state["rng"][ctx.rank])
        start = state["step"]
        if ctx.is_main:
            _truncate_metrics(metrics_path, start)
    elif ctx.is_main and metrics_path.exists():
        metrics_path.unlink()
    last_good = start

    def save(step: int) -> None:
        nonlocal last_good
        rngs = gather_objects(rng_state(), ctx)
        if ctx.is_main:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, step, rngs)
        barrier(ctx)
        last_good = step

    model.train(dropout)
    last: dict[str, float] = {}
    window_tokens, window_t0 = 0.0, time.perf_counter()
    step = start
    with _StopRequests() as stop, StepProgress(cfg.steps, start, description, enabled=ctx.is_main, every=cfg.log_every) as progress:
        while step < cfg.steps:
            optimizer.zero_grad(set_to_none=True)
            loss_sum, parts_sum, tokens = 0.0, {}, 0
            for micro in range(cfg.grad_accum):
                with autocast_context(ctx.device, cfg.precision):
                    out = compute_loss(step, micro)
                (out.loss / cfg.grad_accum).backward()
                loss_sum += out.loss.item() / cfg.grad_accum
                for k, v in out.parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / cfg.grad_accum
                tokens += out.tokens
            names = sorted(parts_sum)
            # One all-reduce carries the loss, the token count, any rank's stop request and the parts.
            reduced = sum_over_ranks([loss_sum, tokens, float(stop.requested)] + [parts_sum[k] for k in names], ctx)
            loss_mean, tokens_all, stop_requested = reduced[0] / ctx.world_size, reduced[1], reduced[2] > 0
            if not math.isfinite(loss_mean):
                raise TrainingDiverged(
                    f"loss became {loss_mean} at step {step + 1}; the last good checkpoint (step {last_good}) is "
                    f"kept in {out_dir}: lower --lr or check the data, then continue with --resume"
                )
            average_gradients(params, ctx)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            step += 1
            window_tokens += tokens_all

            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - window_t0
                last = {"step": step, "loss": loss_mean,
                        **{k: v / ctx.world_size for k, v in zip(names, reduced[3:])},
                        "lr": lr, "tokens_per_s": window_tokens / elapsed if elapsed > 0 else 0.0}
                if ctx.is_main:
                    with open(metrics_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(last) + "\n")
                window_tokens, window_t0 = 0.0, time.perf_counter()
            progress.update(step, f"loss {loss_mean:.4f} {last.get('tokens_per_s', 0):,.0f} tok/s")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
                if after_checkpoint is not None:
                    after_checkpoint(step)
                    model.train(dropout)
            if stop_requested:
                if step % cfg.checkpoint_every and step != cfg.steps:
                    save(step)
                raise TrainingInterrupted(step, checkpoint)
    return last


class _StopRequests:
    """Turns Ctrl-C / SIGTERM into a flag checked between steps, so a checkpoint is never taken mid-step.

    A second Ctrl-C interrupts at once. Only the main thread can install handlers; elsewhere this is inert.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
