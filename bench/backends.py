"""One backend per model format: ONNX Runtime (``onnx``), OpenVINO (``openvino``) and PyTorch (``torch``).

A backend is what ``compress bench`` and ``compress evaluate`` need of a model folder of its format: whether a
folder holds one, the bytes of its weights, its parameter count, the calls to time and an encoder to score.
:data:`BACKENDS` maps a format to its backend; :func:`backend_for` picks one by what a folder holds. Nothing here
imports torch or openvino until a PyTorch or OpenVINO model is opened.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import onnxruntime as ort

from bench.encoders import Encoder, OrtEncoder, TextRequest
from bench.ort_session import SessionRunner, make_feeds, providers_used, request_texts
from bench.timing import TimedCall
from bench.tokenization import load_tokenizer
from compress.config import BenchConfig
from compress.variants import IR_FILE, ONNX_FILE
from export.sessions import PROVIDERS, make_session

if TYPE_CHECKING:
    from bench.stage import Variant

__all__ = ["BACKENDS", "Backend", "OnnxBackend", "OpenVINOBackend", "TorchBackend", "backend_for", "ort_offers"]


class Backend(Protocol):
    """``format``: the name results.json gives it; ``runtime``: its name for people; ``runs_on``: the bench providers
    it can be timed on; ``fixed_positions``: its graph takes at most config.json's positions (the bench checks
    ``--seq-lengths`` against them first).

    ``precision`` of :meth:`encoder` is what the runtime is asked to compute in: OpenVINO's compile precision (the
    table's ``compile_precision``), PyTorch's dtype; an ONNX graph carries its own."""

    format: str
    runtime: str
    runs_on: tuple[str, ...]
    fixed_positions: bool

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` holds a model of this format."""

    def size_bytes(self, folder: Path) -> int:
        """Bytes of the weights on disk."""

    def parameters(self, folder: Path) -> int:
        """Elements in the weights (an INT8 model also counts its scales)."""

    def calls(self, variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
        """The variant ready to time on each of ``cfg``'s providers it runs on, fed each batch × length."""

    def encoder(self, folder: Path, *, precision: str = "fp32", provider: str = "cpu", max_length: int = 128,
                threads: int | None = None, name: str | None = None) -> Encoder:
        """An encoder of the folder for scoring."""


def ort_offers(provider: str) -> bool:
    """Whether this onnxruntime offers ``provider`` (cpu, cuda, tensorrt)."""
    return PROVIDERS.get(provider) in ort.get_available_providers()


class OnnxBackend:
    format, runtime, runs_on, fixed_positions = "onnx", "ONNX Runtime", tuple(PROVIDERS), True

    def holds(self, folder: Path) -> bool:
        return (Path(folder) / ONNX_FILE).is_file()

    def size_bytes(self, folder: Path) -> int:
        """model.onnx and its external data."""
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.name.startswith(ONNX_FILE))

    def parameters(self, folder: Path) -> int:
        """Elements in the graph's initializers."""
        import onnx

        model = onnx.load(str(Path(folder) / ONNX_FILE), load_external_data=False)
        total = 0
        for init in model.graph.initializer:
            count = 1
            for d in init.dims:
                count *= d
            total += count
        return total

    def calls(self, variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
        """A session per provider this onnxruntime offers (one it lacks was warned of by the bench), fed token ids
        for the model call and text for the end-to-end request (on a GPU the request's copies to and from the
        device are part of it)."""
        calls = []
        tokenizer = load_tokenizer(variant.path, None)  # the ids the inputs are cut from
        cut = {s: load_tokenizer(variant.path, s) for s in cfg.seq_lengths}  # truncating at each length
        for provider in (p for p in cfg.providers if ort_offers(p)):
            session = make_session(variant.path / ONNX_FILE, provider, cfg.threads,
                                   trt_cache_dir=variant.path / ".trt-cache" if provider == "tensorrt" else None)
            names = [i.name for i in session.get_inputs()]
            used = providers_used(session)
            for seq_len in cfg.seq_lengths:
                for batch in cfg.batch_sizes:
                    runner = SessionRunner(session, make_feeds(tokenizer, texts, batch, seq_len, names), provider)
                    request = TextRequest(session, cut[seq_len], request_texts(tokenizer, texts, batch, seq_len),
                                          variant.path)
                    calls.append(TimedCall(provider, batch, seq_len, runner, used, request))
        return calls

    def encoder(self, folder: Path, *, precision: str = "fp32", provider: str = "cpu", max_length: int = 128,
                threads: int | None = None, name: str | None = None) -> Encoder:
        """On the CPU where this onnxruntime lacks ``provider``."""
        return OrtEncoder(folder, provider=provider if ort_offers(provider) else "cpu", threads=threads,
                          max_length=max_length, name=name)


class OpenVINOBackend:
    """OpenVINO's CPU plugin. Its rows carry provider ``cpu``, so both runtimes share one table, Pareto front and
    recommendation."""

    format, runtime, runs_on, fixed_positions = "openvino", "OpenVINO", ("cpu",), True

    def holds(self, folder: Path) -> bool:
        return (Path(folder) / IR_FILE).is_file()

    def size_bytes(self, folder: Path) -> int:
        """The IR's .xml and .bin."""
        from export.openvino_export import ir_size

        return ir_size(folder)

    def parameters(self, folder: Path) -> int:
        """Elements in the IR's constants (an INT8 IR also counts its quantization ranges)."""
        from export.openvino_export import require_openvino

        model = require_openvino().Core().read_model(str(Path(folder) / IR_FILE))
        total = 0
        for op in model.get_ops():
            if op.get_type_name() == "Constant":
                count = 1
                for d in op.get_output_shape(0):
                    count *= int(d)
                total += count
        return total

    def calls(self, variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
        from export.openvino_export import OpenVINOSession

        if "cpu" not in cfg.providers:
            return []
        session = OpenVINOSession(variant.path, variant.compile_precision, cfg.threads)
        tokenizer = load_tokenizer(variant.path, None)  # the ids the inputs are cut from
        used = [f"OpenVINO CPU ({session.inference_precision})"]
        calls = []
        for seq_len in cfg.seq_lengths:
            cut = load_tokenizer(variant.path, seq_len)
            for batch in cfg.batch_sizes:
                feeds = make_feeds(tokenizer, texts, batch, seq_len, session.names)
                request = session.request
                request.infer(feeds)  # the first call with a new shape compiles for it
                text = TextRequest(session, cut, request_texts(tokenizer, texts, batch, seq_len), variant.path)
                calls.append(TimedCall("cpu", batch, seq_len, functools.partial(request.infer, feeds), used, text))
        return calls

    def encoder(self, folder: Path, *, precision: str = "fp32", provider: str = "cpu", max_length: int = 128,
                threads: int | None = None, name: str | None = None) -> Encoder:
        """On the CPU whatever ``provider``, compiled to ``precision`` (fp32 or bf16)."""
        from export.openvino_export import OpenVINOSession

        session = OpenVINOSession(folder, precision, threads)
        return OrtEncoder(folder, session=session, max_length=max_length, name=name)


class TorchBackend:
    """A Hugging Face folder (or id) in PyTorch: ``cpu`` on the CPU, ``cuda`` on the GPU."""

    format, runtime, runs_on, fixed_positions = "torch", "PyTorch", ("cpu", "cuda"), False

    def holds(self, folder: Path) -> bool:
        return True  # what is neither ONNX nor OpenVINO is tried as a Hugging Face folder or id

    def size_bytes(self, folder: Path) -> int:
        """The safetensors / .bin weight files."""
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".bin"))

    def parameters(self, folder: Path) -> int:
        from bench.torch_timing import parameter_count

        return parameter_count(folder)

    def calls(self, variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
        from bench.torch_timing import torch_calls

        return torch_calls(variant, cfg, texts)

    def encoder(self, folder: Path, *, precision: str = "fp32", provider: str = "cpu", max_length: int = 128,
                threads: int | None = None, name: str | None = None) -> Encoder:
        import torch

        from bench.torch_encoder import TorchEncoder

        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if "cuda" in provider else "cpu"
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return TorchEncoder(folder, device=device, dtype=dtype, max_length=max_length, name=name)


BACKENDS: dict[str, Backend] = {b.format: b for b in (OnnxBackend(), OpenVINOBackend(), TorchBackend())}


def backend_for(folder: Path) -> Backend:
    """The backend of what ``folder`` holds: model.onnx, an OpenVINO IR, or else a Hugging Face folder (or id)."""
    return next(b for b in BACKENDS.values() if b.holds(folder))
