"""The facts of the machine a benchmark ran on, for ``results.json``: CPU, cores, instruction sets, OS, library
versions, ONNX Runtime providers and the GPU.

Nothing here imports torch or transformers: their versions come from the installed package metadata.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from compress.run_dir import library_versions
from export.isa import cpu_features  # torch-free: platform + /proc/cpuinfo

__all__ = ["machine_facts", "physical_cores", "available_cores", "bench_threads", "gpus"]

_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "onnx", "openvino", "nncf", "numpy", "tokenizers", "matplotlib",
              "optimum", "optimum-onnx", "torch", "transformers", "relation-compress")
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "vnni")


def physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where that file does not say."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    cores, package, core = set(), None, None
    for line in cpuinfo.read_text(errors="replace").splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not key:  # a blank line ends one logical CPU's block
            if core is not None:
                cores.add((package, core))
            package = core = None
    return len(cores) or None


def _usable_cpus() -> int | None:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return None


def _cpu_quota() -> float | None:
    """CPUs allowed by the cgroup v2 quota (containers), or None when unlimited or unknown."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return round(int(quota) / int(period), 2)
    return None


def available_cores() -> int:
    """Physical cores this process can use: /proc/cpuinfo's physical cores, capped by the CPUs it may run on
    (affinity) and by the cgroup quota (rounded down); at least 1 (the logical CPU count where nothing says more)."""
    limits = [n for n in (physical_cores(), _usable_cpus()) if n]
    quota = _cpu_quota()
    if quota is not None:
        limits.append(max(1, int(quota)))
    return max(1, min(limits)) if limits else max(1, os.cpu_count() or 1)


def bench_threads(configured: int | None) -> tuple[int, str]:
    """The one thread count every runtime runs at (ONNX Runtime intra-op, OpenVINO INFERENCE_NUM_THREADS,
    torch.set_num_threads) and where it came from: ``configured`` (``bench.threads``) when set, else
    :func:`available_cores` (``"physical cores"``)."""
    if configured is not None:
        return configured, "bench.threads"
    return available_cores(), "physical cores"


def gpus() -> list[dict[str, str]]:
    """``nvidia-smi``'s GPU names and driver versions; empty where there is no nvidia-smi or it fails."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        name, _, driver = line.partition(",")
        if name.strip():
            found.append({"name": name.strip(), "driver": driver.strip()})
    return found


def machine_facts(threads: int | None) -> dict[str, Any]:
    """A JSON-ready description of this machine; ``threads`` is the thread count every runtime ran at
    (:func:`bench_threads`; None in results from before it was always set)."""
    import onnxruntime as ort

    features = cpu_features()
    return {
        "cpu": features["model"] or platform.processor() or "unknown",
        "arch": features["machine"],
        "physical_cores": physical_cores(),
        "logical_cores": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "cpu_quota": _cpu_quota(),
        "threads": threads,
        "isa": {flag: bool(features.get(flag, False)) for flag in _ISA_FLAGS},
        "os": platform.platform(),
        "versions": library_versions(_LIBRARIES),
        "ort_providers": list(ort.get_available_providers()),
        "gpus": gpus(),
    }
