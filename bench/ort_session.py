"""ONNX Runtime sessions for benchmarking: provider checks, session options, real-text inputs, one-call runners.

The runner keeps everything except the inference itself out of the timed call:

* CPU: ``session.run(output_names, feeds)`` with the output names and the (dtype-converted) feeds prepared once.
* CUDA / TensorRT: an ``IOBinding`` made once, inputs copied to the GPU once (``OrtValue.ortvalue_from_numpy(...,
  "cuda", device_id)``) and outputs bound to GPU memory, so a call is ``session.run_with_iobinding(binding)``
  with no host↔device copy (ONNX Runtime's documented way to time GPU inference without the transfers:
  https://onnxruntime.ai/docs/performance/tune-performance/iobinding.html).

Tokenizers: :func:`make_feeds` accepts a ``tokenizers.Tokenizer`` (what :func:`bench.tokenization.load_tokenizer`
returns) or a transformers *fast* tokenizer (its ``backend_tokenizer`` is used); either way it works without padding
and truncation (on a private copy where they are on: ``load_tokenizer(folder, None)`` needs none), and takes the
special tokens ([CLS]/[SEP], <s>/</s>) from the tokenizer's own post-processor. Slow (pure-Python) transformers
tokenizers are refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import numpy as np
import onnxruntime as ort

from compress.errors import UserError
from export.sessions import GPU_PROVIDERS, PROVIDERS

__all__ = ["SessionRunner", "make_feeds", "providers_used", "request_texts"]

# ONNX tensor element types the text inputs may be declared with
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
        if self.provider in GPU_PROVIDERS:
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
    """A ``tokenizers.Tokenizer`` with padding and truncation off, from either kind of tokenizer: itself where they are
    off already, otherwise a private copy (parsing a 250k vocabulary's copy takes about 0.7 s)."""
    from tokenizers import Tokenizer

    backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise TypeError(f"make_feeds needs a tokenizers.Tokenizer or a transformers fast tokenizer, not "
                        f"{type(tokenizer).__name__} (load the folder with bench.tokenization.load_tokenizer)")
    if backend.padding is None and backend.truncation is None:
        return backend
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
    tok, head, tail, body = _frame(tokenizer, batch, seq_len)
    stream = iter(_token_stream(tok, list(texts)))
    ids = np.empty((batch, seq_len), dtype=np.int64)
    for row in range(batch):
        chunk = list(itertools.islice(stream, body))
        if len(chunk) < body:
            raise ValueError("make_feeds: the texts give no tokens; pass some non-empty lines of text")
        ids[row] = head + chunk + tail
    arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {name: arrays[name] for name in names}


def _frame(tokenizer, batch: int, seq_len: int):
    """The backend tokenizer, the special tokens around a row (head, tail) and how many text tokens fit (body)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    tok = _backend(tokenizer)
    head, tail = _special_frame(tok)
    body = seq_len - len(head) - len(tail)
    if body < 1:
        raise ValueError(f"seq_len {seq_len} leaves no room for text between the {len(head) + len(tail)} special tokens")
    return tok, head, tail, body


def request_texts(tokenizer, texts: list[str], batch: int, seq_len: int) -> list[str]:
    """``batch`` strings of real text as a user would send them, each about ``seq_len`` tokens long with the special
    tokens (the end-to-end timing's input; tokenizing with truncation at ``seq_len`` gives at most that).

    Row r joins consecutive ``texts`` lines (cycling) from where row r-1 stopped until they give ``seq_len - specials``
    tokens, and is cut at the end of that token in the original string (so the tokenizer does its normal work on
    normal text, and not much more than the model sees). Either kind of tokenizer, as :func:`make_feeds`."""
    tok, head, tail, body = _frame(tokenizer, batch, seq_len)
    lines = [t for t in texts if t.strip()]
    if not lines or not any(tok.encode(t, add_special_tokens=False).ids for t in lines[:100]):
        raise ValueError("request_texts: the texts give no tokens; pass some non-empty lines of text")
    rows, cursor = [], 0
    for _ in range(batch):
        text = ""
        for _ in range(len(lines) * max(1, body)):  # enough lines for any body, even one token per line
            text = f"{text} {lines[cursor % len(lines)]}" if text else lines[cursor % len(lines)]
            cursor += 1
            enc = tok.encode(text, add_special_tokens=False)
            if len(enc.ids) >= body:
                text = text[:enc.offsets[body - 1][1]]
                break
        rows.append(text)
    return rows
