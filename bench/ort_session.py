"""ONNX Runtime sessions for benchmarking: provider checks, session options, real-text inputs, one-call runners.

The runner keeps everything except the inference itself out of the timed call:

* CPU: ``session.run(output_names, feeds)`` with the output names and the (dtype-converted) feeds prepared once.
* CUDA / TensorRT: an ``IOBinding`` made once, inputs copied to the GPU once (``OrtValue.ortvalue_from_numpy(...,
  "cuda", device_id)``) and outputs bound to GPU memory, so a call is ``session.run_with_iobinding(binding)``
  with no host↔device copy (ONNX Runtime's documented way to time GPU inference without the transfers:
  https://onnxruntime.ai/docs/performance/tune-performance/iobinding.html).

Tokenizers: :func:`make_feeds` accepts a ``tokenizers.Tokenizer`` (what :func:`bench.tokenization.load_tokenizer`
returns) or a transformers *fast* tokenizer (its ``backend_tokenizer`` is used); either way it works on a private
copy with padding and truncation switched off, and takes the special tokens ([CLS]/[SEP], <s>/</s>) from the
tokenizer's own post-processor. Slow (pure-Python) transformers tokenizers are refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from compress.errors import UserError, first_line
from export.fusion import disable_slow_cpu_fusions

__all__ = ["PROVIDERS", "check_provider", "make_session", "SessionRunner", "make_feeds", "providers_used"]

PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_GPU = ("cuda", "tensorrt")
# ONNX tensor element types the text inputs may be declared with
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _installed_hint(name: str) -> str:
    if name in _GPU:
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


def providers_used(session: ort.InferenceSession) -> list[str]:
    """The providers the session actually holds, in priority order (record these with the timings)."""
    return list(session.get_providers())


class SessionRunner:
    """A no-argument callable doing one inference of ``session`` on fixed ``feeds`` (what :func:`bench.timing.measure`
    times).

    Only the inputs the model declares are fed (``feeds`` may hold more, e.g. ``token_type_ids`` for a RoBERTa
    export that has none); each is converted once to the integer type the model declares. A declared input missing
    from ``feeds`` is a ValueError. :meth:`outputs` runs once more and returns host copies of the outputs.
    """

    def __init__(self, session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], provider: str, *,
                 device_id: int = 0):
        self.session = session
        self.provider = provider.strip().lower()
        if self.provider not in PROVIDERS:
            raise UserError(f"unknown provider '{provider}': choose from {', '.join(PROVIDERS)}")
        self.output_names = [o.name for o in session.get_outputs()]
        self.feeds: dict[str, np.ndarray] = {}
        for spec in session.get_inputs():
            if spec.name not in feeds:
                raise ValueError(f"the model needs input '{spec.name}' but the feeds hold only {sorted(feeds)}")
            dtype = _INT_TYPES.get(spec.type)
            value = np.asarray(feeds[spec.name])
            self.feeds[spec.name] = np.ascontiguousarray(value, dtype=dtype) if dtype is not None else value
        if self.provider in _GPU:
            binding = session.io_binding()
            # Copied to the device once, here; the OrtValues are kept alive by self._device_inputs.
            self._device_inputs = {name: ort.OrtValue.ortvalue_from_numpy(value, "cuda", device_id)
                                   for name, value in self.feeds.items()}
            for name, value in self._device_inputs.items():
                binding.bind_ortvalue_input(name, value)
            for name in self.output_names:
                binding.bind_output(name, "cuda", device_id)  # allocated by ORT on the device, shape unknown
            self._binding = binding
            self._run = self._run_bound
        else:
            self._binding = None
            self._run = self._run_host

    def _run_host(self):
        return self.session.run(self.output_names, self.feeds)

    def _run_bound(self):
        self.session.run_with_iobinding(self._binding)
        # run_with_iobinding synchronises the providers' streams when the run ends (unless the run options say
        # otherwise); synchronize_outputs makes sure the device outputs are complete before the clock stops.
        self._binding.synchronize_outputs()

    def __call__(self):
        return self._run()

    def outputs(self) -> list[np.ndarray]:
        """One more inference, its outputs returned as host numpy arrays in ``output_names`` order (for checks)."""
        if self._binding is not None:
            self._run()
            return self._binding.copy_outputs_to_cpu()
        return list(self._run())


# ---------------------------------------------------------------- inputs from real text


def _backend(tokenizer):
    """A private ``tokenizers.Tokenizer`` copy, padding and truncation off, from either kind of tokenizer."""
    from tokenizers import Tokenizer

    backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise TypeError(f"make_feeds needs a tokenizers.Tokenizer or a transformers fast tokenizer, not "
                        f"{type(tokenizer).__name__} (load the folder with bench.tokenization.load_tokenizer)")
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after a single sequence (e.g. [CLS] … [SEP], <s> … </s>)."""
    enc = tokenizer.encode("a", add_special_tokens=True)
    mask, ids = enc.special_tokens_mask, enc.ids
    head = 0
    while head < len(ids) and mask[head]:
        head += 1
    tail = len(ids)
    while tail > head and mask[tail - 1]:
        tail -= 1
    return ids[:head], ids[tail:]


def _token_stream(tokenizer, texts: list[str]) -> Iterable[int]:
    """Ids of ``texts`` without special tokens, line after line, cycling through the lines for ever."""
    cache: dict[int, list[int]] = {}
    produced = False
    while True:
        for i, text in enumerate(texts):
            if i not in cache:
                cache[i] = tokenizer.encode(text, add_special_tokens=False).ids
            produced = produced or bool(cache[i])
            yield from cache[i]
        if not produced:
            return


def make_feeds(tokenizer, texts: list[str], batch: int, seq_len: int,
               input_names: Iterable[str] = KNOWN_INPUTS) -> dict[str, np.ndarray]:
    """int64 ``[batch, seq_len]`` inputs cut from real text, every row exactly ``seq_len`` tokens and no padding.

    The ids of consecutive ``texts`` (tokenised without special tokens) are concatenated into one stream, cycling
    through the lines when they run out; each row takes the next ``seq_len - specials`` ids of the stream and is
    framed by the tokenizer's own special tokens ([CLS] … [SEP] or <s> … </s>). ``attention_mask`` is all ones,
    ``token_type_ids`` all zeros. Only ``input_names`` are returned (pass the session's input names); a name
    other than input_ids / attention_mask / token_type_ids is a UserError.
    """
    names = list(input_names)
    unknown = [n for n in names if n not in KNOWN_INPUTS]
    if unknown:
        raise UserError(f"the model takes input(s) {', '.join(unknown)}, which the benchmark cannot make: "
                        f"supported inputs are {', '.join(KNOWN_INPUTS)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    tok = _backend(tokenizer)
    head, tail = _special_frame(tok)
    body = seq_len - len(head) - len(tail)
    if body < 1:
        raise ValueError(f"seq_len {seq_len} leaves no room for text between the {len(head) + len(tail)} special tokens")
    stream = iter(_token_stream(tok, list(texts)))
    ids = np.empty((batch, seq_len), dtype=np.int64)
    for row in range(batch):
        chunk = list(itertools.islice(stream, body))
        if len(chunk) < body:
            raise ValueError("make_feeds: the texts give no tokens; pass some non-empty lines of text")
        ids[row] = head + chunk + tail
    arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {name: arrays[name] for name in names}
