"""Process-wide numeric switches of torch, scoped to one run: TF32 matmuls and deterministic kernels.

torch keeps both as global state. A run that sets them and never restores them changes every later computation
in the same process (a test's fp32 comparison, a notebook's next cell), so :func:`run_numerics` sets them on entry
and puts back what it found on exit.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

# cuBLAS needs a fixed workspace for reproducible split-K reductions (CUDA's documented setting); read when
# cuBLAS first initialises, so it is set before the run's first matmul.
CUBLAS_WORKSPACE = ":4096:8"


def _get_fp32_precision() -> tuple[str, str]:
    return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision


def _set_fp32_precision(matmul: str, conv: str) -> None:
    torch.backends.cuda.matmul.fp32_precision = matmul
    torch.backends.cudnn.conv.fp32_precision = conv


@contextlib.contextmanager
def run_numerics(device: torch.device, *, deterministic: bool = False) -> Iterator[None]:
    """Within the block: fp32 matmuls and convolutions on CUDA in TF32 (the fp32 parts of a distillation step;
    bf16 ones are unaffected), and with ``deterministic`` torch's deterministic algorithms (SDPA's backward and
    cuBLAS without atomics or varying split-K), warning rather than failing where an op has none. Restored after."""
    has_api = hasattr(torch.backends.cuda.matmul, "fp32_precision")  # torch >= 2.9; older ones: leave TF32 alone
    saved_precision = _get_fp32_precision() if has_api else None
    saved_deterministic = (torch.are_deterministic_algorithms_enabled(),
                           torch.is_deterministic_algorithms_warn_only_enabled())
    saved_cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    saved_workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if has_api and device.type == "cuda":
            _set_fp32_precision("tf32", "tf32")
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        yield
    finally:
        if saved_precision is not None:
            _set_fp32_precision(*saved_precision)
        torch.use_deterministic_algorithms(saved_deterministic[0], warn_only=saved_deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved_cudnn
        if saved_workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_workspace
