"""The one training loop, shared by distillation and quantization-aware retraining.

Written out in full (no callback engine): AdamW with linear warm-up and decay, gradient accumulation,
clipping, optional bf16 autocast, DDP's ``no_sync`` during accumulation, metrics as JSON lines (and to the
experiment trackers of ``train.report_to``, compress/tracking.py), atomic checkpoints that make ``resume`` exact,
Ctrl-C that saves and exits, and a stop on a NaN/inf loss.
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
from typing import Any, Callable, Iterator

import torch

from compress.config import TrainConfig
from compress.errors import Interrupted
from compress.distributed import DistContext, barrier, gather_objects, rng_state, set_rng_state
from compress.progress import StepProgress
from compress.run_dir import CHECKPOINT, atomic_write_text
from compress.tracking import Trackers

METRICS = "metrics.jsonl"


@dataclass
class StepOutput:
    """What one micro-batch contributes: the loss to backpropagate, named parts to log, tokens seen."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor | float]  # tensors stay on the device until a logging step
    tokens: int  # counted on the host (from the batch before it went to the device)


class TrainingInterrupted(Interrupted):
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


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs on which bf16 matmuls run natively (torch's own ISA probes)."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe() for probe in probes if probe is not None)


def resolve_precision(precision: str, device: torch.device, *, cpu_bf16: bool = True) -> str:
    """``precision`` of distillation, fine-tuning and QAT: ``auto`` is bf16 on CUDA and, where ``cpu_bf16``, on CPUs
    with native bf16; fp32 elsewhere.

    On CPU this was measured, not assumed (docs/benchmarks.md): the demo preset distilled for 400 steps in fp32
    and in bf16 ends at the same loss (0.3037 / 0.3046) and the same scores (langid 0.977 / 0.976, bitext
    0.678 / 0.682, fidelity 0.571 / 0.576), and its step is 1.36× faster in bf16 on the AVX-512 BF16 CPU.
    Fine-tuning likewise: the demo's sentiment-en fine-tuning (4,000 examples, 2 epochs) in fp32 and in bf16 ends at
    the same dev accuracy (0.7292 / 0.7297) and test accuracy (0.7155 / 0.7155), in 8 min 4 s / 5 min 54 s.
    QAT passes ``cpu_bf16=False``: its accuracy in bf16 on CPU has not been compared with fp32.
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16()) else "fp32"


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast for ``precision`` bf16, a no-op for fp32 (callers resolve ``auto``: :func:`resolve_precision`)."""
    if precision == "auto":
        raise ValueError("autocast_context takes a resolved precision (fp32 or bf16); see resolve_precision")
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, rngs: list) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "rng": rngs}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint with every tensor on the CPU: ``load_state_dict`` copies weights and optimizer state to the
    parameters' device, and the RNG states must stay CPU byte tensors (``torch.set_rng_state`` takes no other)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _truncate_metrics(path: Path, step: int) -> dict[str, float]:
    """Drop metric lines written after the checkpoint we resume from; returns the last line kept ({} if none),
    so that a resume of a finished run reports its final metrics."""
    if not path.exists():
        return {}
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return json.loads(kept[-1]) if kept else {}


def _reduce(values: list[torch.Tensor | float], ctx: DistContext) -> list[float]:
    """Sum ``values`` over ranks and bring them to the host: the only device sync of the loop."""
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=ctx.device) for v in values])
    if ctx.distributed:
        torch.distributed.all_reduce(t)
    return t.tolist()


def train(
    model: torch.nn.Module,
    compute_loss: Callable[[int, int, Any], StepOutput],
    cfg: TrainConfig,
    out_dir: Path,
    ctx: DistContext,
    *,
    batches: Callable[[int], Iterator[Any]] | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    resume: bool = False,
    description: str = "train",
    dropout: bool = True,
    after_checkpoint: Callable[[int], None] | None = None,
    trackers: Trackers | None = None,
) -> dict[str, float]:
    """Run ``cfg.steps`` optimiser steps; ``compute_loss(step, micro, batch)`` builds one micro-batch's loss.

    ``batches(start_step)``, when given, yields the micro-batches from ``start_step`` on in order (a
    DataLoader); ``batch`` is None otherwise. ``no_sync()`` (DDP's) wraps every micro-batch but a step's
    last, so gradients are all-reduced once per step, overlapped with the last backward pass.
    The host waits for the device only on logging and checkpoint steps: the loss, its parts and any
    stop request are reduced there, and a NaN/inf loss is caught there, before any checkpoint is written.

    Writes ``out_dir/metrics.jsonl`` and ``out_dir/checkpoint.pt`` (main rank). Returns the last
    logged metrics. Raises TrainingInterrupted on Ctrl-C and TrainingDiverged on a NaN/inf loss.
    ``dropout=False`` trains in eval mode (QAT: the graph that will be deployed has no dropout).
    ``after_checkpoint(step)`` runs on every rank after each regular checkpoint (fine-tuning scores
    the dev split there); the model is put back in training mode afterwards.
    ``trackers`` (:func:`compress.tracking.open_trackers`), on the main rank, are started at the first step (the
    checkpoint's on resume), get every metrics line, and are closed when training ends, however it ends.
    Logged per line: ``loss``, its parts, ``lr``, ``grad_norm`` (before clipping; both means over the window)
    and ``tokens_per_s``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, metrics_path = out_dir / CHECKPOINT, out_dir / METRICS
    optimizer = make_optimizer(model, cfg)
    warmup = warmup_steps(cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, cfg.steps))
    params = [p for p in model.parameters() if p.requires_grad]

    start, last = 0, {}
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ctx.rank < len(state["rng"]):  # a resume on more ranks than saved starts their RNGs afresh
            set_rng_state(state["rng"][ctx.rank])
        start = state["step"]
        if ctx.is_main:
            last = _truncate_metrics(metrics_path, start)
    elif ctx.is_main and metrics_path.exists():
        metrics_path.unlink()
    last_good: int | None = start if checkpoint.exists() else None

    def save(step: int) -> None:
        nonlocal last_good
        rngs = gather_objects(rng_state(), ctx)
        if ctx.is_main:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, step, rngs)
        barrier(ctx)
        last_good = step

    model.train(dropout)
    data = iter(batches(start)) if batches is not None else None
    window = _Window(first=start)
    step, status = start, ""
    trackers = trackers if ctx.is_main else None
    if trackers is not None:
        trackers.start(start, resumed=resume and start > 0)
    with _tracking(trackers), _StopRequests() as stop, \
            StepProgress(cfg.steps, start, description, enabled=ctx.is_main, every=cfg.log_every) as progress:
        while step < cfg.steps:
            optimizer.zero_grad(set_to_none=True)
            for micro in range(cfg.grad_accum):
                batch = next(data) if data is not None else None
                sync = no_sync is None or micro == cfg.grad_accum - 1
                with contextlib.nullcontext() if sync else no_sync():
                    with autocast_context(ctx.device, cfg.precision):
                        out = compute_loss(step, micro, batch)
                    (out.loss / cfg.grad_accum).backward()
                window.add(out, cfg.grad_accum)
            window.add_grad_norm(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            step += 1

            log_now = step % cfg.log_every == 0 or step == cfg.steps
            save_now = step % cfg.checkpoint_every == 0 or step == cfg.steps
            # One process can stop between any two steps; several agree on it at the next synced step.
            stop_now = stop.requested and not ctx.distributed
            if log_now or save_now or stop_now:
                names, reduced = window.reduce(ctx, stop.requested)
                loss_mean = reduced["loss"]
                if not math.isfinite(loss_mean):
                    kept = (f"the last good checkpoint (step {last_good}) is kept in {out_dir}" if last_good is not None
                            else "no checkpoint was written yet")
                    raise TrainingDiverged(
                        f"loss became {loss_mean} between steps {window.first + 1} and {step}; {kept}: lower --lr or "
                        "check the data, then " + ("continue with --resume" if last_good is not None else "start again")
                    )
                stop_now = reduced["stop"] > 0
                if log_now:
                    elapsed = time.perf_counter() - window.t0
                    last = {"step": step, "loss": loss_mean, **{k: reduced[k] for k in names}, "lr": lr,
                            "grad_norm": reduced["grad_norm"],
                            "tokens_per_s": reduced["tokens"] / elapsed if elapsed > 0 else 0.0}
                    if ctx.is_main:
                        with open(metrics_path, "a", encoding="utf-8") as f:
                            f.write(json.dumps(last) + "\n")
                    if trackers is not None:
                        trackers.log_metrics(step, last)
                window = _Window(first=step)
                status = f"loss {loss_mean:.4f} {last.get('tokens_per_s', 0):,.0f} tok/s"
            progress.update(step, status)
            if save_now:
                save(step)
                if after_checkpoint is not None:
                    after_checkpoint(step)
                    model.train(dropout)
            if stop_now:
                if not save_now:
                    save(step)
                raise TrainingInterrupted(step, checkpoint)
    return last


@contextlib.contextmanager
def _tracking(trackers: Trackers | None):
    """Close the trackers however training ends: finished, interrupted (Ctrl-C) or failed."""
    if trackers is None:
        yield
        return
    try:
        yield
    except (TrainingInterrupted, KeyboardInterrupt):
        trackers.close("interrupted")
        raise
    except BaseException:
        trackers.close("failed")
        raise
    trackers.close("finished")


class _Window:
    """Loss, its parts, the gradient norm and the token count since the last synced step, kept on the device."""

    def __init__(self, first: int = 0):
        self.first, self.t0 = first, time.perf_counter()
        self.steps = 0.0
        self.loss: torch.Tensor | float = 0.0
        self.grad_norm: torch.Tensor | float = 0.0
        self.parts: dict[str, torch.Tensor | float] = {}
        self.tokens = 0

    def add_grad_norm(self, norm: torch.Tensor) -> None:
        """One optimiser step's total gradient norm (before clipping)."""
        self.grad_norm = self.grad_norm + norm.detach().float()

    def add(self, out: StepOutput, grad_accum: int) -> None:
        self.steps += 1 / grad_accum
        self.loss = self.loss + out.loss.detach().float() / grad_accum
        for k, v in out.parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + (v.detach().float() if torch.is_tensor(v) else v) / grad_accum
        self.tokens += out.tokens

    def reduce(self, ctx: DistContext, stop: bool) -> tuple[list[str], dict[str, float]]:
        """Means per step over the window and over ranks; ``tokens`` and ``stop`` summed over ranks."""
        names = sorted(self.parts)
        values = _reduce([self.loss, float(self.tokens), float(stop), self.grad_norm] + [self.parts[k] for k in names], ctx)
        scale = 1.0 / (max(self.steps, 1e-9) * ctx.world_size)
        reduced = {"loss": values[0] * scale, "tokens": values[1], "stop": values[2], "grad_norm": values[3] * scale}
        reduced.update({k: v * scale for k, v in zip(names, values[4:])})
        return names, reduced


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
