"""ONNX Runtime sessions, built in one place: provider checks and session options for export, evaluation and bench.

CPU sessions get every graph optimisation except the SkipLayerNorm fusion that is slower on CPU
(:mod:`export.fusion`); GPU sessions fall back to CPU only for the nodes their provider cannot take, and a
silent fall-back of the whole session is refused. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from compress.errors import UserError, first_line
from export.fusion import disable_slow_cpu_fusions

PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GPU_PROVIDERS = ("cuda", "tensorrt")

def _installed_hint(name: str) -> str:
    if name in GPU_PROVIDERS:
        extra = " and the TensorRT libraries" if name == "tensorrt" else ""
        return (f"install onnxruntime-gpu in place of onnxruntime (the two cannot share an environment; "
                f"`pip uninstall onnxruntime && pip install onnxruntime-gpu`){extra}, on a machine with an NVIDIA "
                f"GPU and driver")
    return "reinstall onnxruntime"


def check_provider(name: str) -> str:
    """The execution-provider name for ``name`` (cpu, cuda, tensorrt); a one-line UserError when it is unknown or
    this onnxruntime build does not offer it, naming the providers it does offer and what to install."""
    available = ort.get_available_providers()
    offered = ", ".join(available) or "none"
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in PROVIDERS:
        raise UserError(f"unknown provider '{name}': choose from {', '.join(PROVIDERS)} "
                        f"(this onnxruntime {ort.__version__} offers {offered})")
    provider = PROVIDERS[key]
    if provider not in available:
        raise UserError(f"provider '{key}' ({provider}) is not available in this onnxruntime {ort.__version__}, "
                        f"which offers {offered}: {_installed_hint(key)}")
    return provider


def make_session(onnx_path: Path | str, provider: str, threads: int | None, *, device_id: int = 0,
                 trt_fp16: bool = False, trt_cache_dir: Path | str | None = None) -> ort.InferenceSession:
    """An InferenceSession on ``provider`` (cpu, cuda or tensorrt) with all graph optimisations (on CPU, all but
    SkipLayerNorm fusion: :mod:`export.fusion`).

    ``threads`` sets ``intra_op_num_threads`` (``None``: ONNX Runtime's default, one per physical core); the
    execution is sequential with one inter-op thread. TensorRT runs with CUDA and then CPU as fall-backs for the
    nodes it cannot take, FP16 off unless ``trt_fp16``, and its engines cached in ``trt_cache_dir`` when given
    (engines are built per input shape during warm-up; the cache spares that on the next run).

    Raises UserError when the provider is missing, the file cannot be loaded, or ONNX Runtime silently fell back
    to another provider (e.g. CUDA libraries not found). :func:`providers_used` tells which providers it holds.
    """
    ep = check_provider(provider)
    key = provider.strip().lower()
    path = Path(onnx_path)
    if not path.is_file():
        raise UserError(f"no ONNX model at {path}: run `compress export` first")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1 (got {threads})")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if key == "cpu":
        providers: list = ["CPUExecutionProvider"]
        disable_slow_cpu_fusions(options)  # SkipLayerNorm fusion is slower on CPU (export.fusion)
    elif key == "cuda":
        providers = [cuda, "CPUExecutionProvider"]
    else:
        trt: dict[str, object] = {"device_id": device_id, "trt_fp16_enable": bool(trt_fp16)}
        if trt_cache_dir is not None:
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            trt |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache_dir)}
        providers = [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # ORT raises several pybind types (Fail, InvalidGraph, NoSuchFile, ...)
        raise UserError(f"ONNX Runtime cannot load {path} on {key} ({first_line(err)}): re-run `compress export`") from None
    if session.get_providers()[0] != ep:
        raise UserError(f"ONNX Runtime fell back from {ep} to {', '.join(session.get_providers())} for {path}: "
                        f"check the CUDA/cuDNN{'/TensorRT' if key == 'tensorrt' else ''} libraries onnxruntime-gpu needs")
    return session
