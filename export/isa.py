"""What the CPU offers for INT8: VNNI decides between full-range and reduced-range weights.

Without VNNI, x86 INT8 matmuls (``vpmaddubsw``) can saturate their 16-bit intermediate sums; ONNX Runtime's
documented remedy is 7-bit weights (``reduce_range=True``). With VNNI (AVX512-VNNI or AVX-VNNI) the sums
are 32-bit and full-range weights are safe and more accurate.
"""

from __future__ import annotations

import platform
from pathlib import Path

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_features() -> dict[str, object]:
    """CPU model, machine type and the INT8-relevant instruction-set flags (Linux /proc/cpuinfo)."""
    flags: set[str] = set()
    model = platform.processor() or ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "model name" and not model:
                model = value.strip()
    features = {flag: flag in flags for flag in _FLAGS}
    return {"machine": platform.machine(), "model": model, **features,
            "vnni": features["avx512_vnni"] or features["avx_vnni"]}


def needs_reduced_range(features: dict[str, object]) -> bool:
    """7-bit weights on x86 CPUs without VNNI; full range elsewhere."""
    return features["machine"] in ("x86_64", "AMD64") and not features["vnni"]
