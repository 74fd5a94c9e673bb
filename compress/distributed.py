"""Data parallelism on ``torch.distributed``, launched with ``torchrun`` (NCCL on CUDA, gloo on CPU).

The training step wraps the student in ``DistributedDataParallel`` (bucketed all-reduces that overlap
with the backward pass; see compress.distill); this module only joins the process group and carries
the few collective helpers the run needs (weight fingerprints, checkpoint RNG states, barriers).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from compress.errors import UserError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    local_rank: int = 0  # rank within this machine (one process per machine prepares shared caches)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a CUDA device is a user error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available: use --device cpu or auto")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def init_from_env(requested_device: str) -> DistContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    device = resolve_device(requested_device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # device_id binds NCCL's communicator to this process's GPU at once (no guessing, no hang at the first
        # collective when ranks would otherwise pick the same device).
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return DistContext(rank=dist.get_rank(), world_size=world_size, device=device, local_rank=local_rank)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (NCCL warns of leaked resources, and may hang at exit, without it)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def rng_state() -> dict[str, Any]:
    """Every random generator a training step draws from."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s generators, wherever a loader put its tensors (torch takes CPU byte tensors)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
