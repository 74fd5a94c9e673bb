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

__all__ = ["machine_facts", "physical_cores", "gpus"]

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
    """A JSON-ready description of this machine; ``threads`` is the intra-op thread count the benchmark used
    (None: ONNX Runtime's default, one per physical core)."""
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
