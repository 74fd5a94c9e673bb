"""Models behind one small interface, so that evaluation cannot tell PyTorch from ONNX Runtime.

An encoder turns texts into sentence embeddings (``embed``: mean-pooled last hidden states) and, when
it has a classification head, into logits (``logits``). ``OrtEncoder`` needs no torch;
``bench.torch_encoder.TorchEncoder`` is the PyTorch twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from compress.pooling import mean_pool
from bench.tokenization import encode_batch, load_tokenizer
from compress.errors import UserError


class Encoder(Protocol):
    name: str
    labels: list[str] | None  # class names in logit order; None without a classification head

    def embed(self, texts: list[str]) -> np.ndarray:
        """N texts → [N, H] float32 mean-pooled embeddings."""

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """N texts (and second texts) → [N, C] float32."""


def head_labels(config_path: Path) -> list[str] | None:
    """Class names from a config.json's ``id2label`` when the model was saved with a classification head."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return None
    id2label = config.get("id2label") or {}
    return [id2label[str(i)] for i in range(len(id2label))]


def length_sorted_batches(texts: list[str], batch_size: int) -> list[list[int]]:
    """Index batches with texts of similar length together (less padding); every index once."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class MemoizedEncoder:
    """An encoder whose ``embed`` answers a list of texts it has embedded before from memory (``[N, H]`` per
    distinct list, held while the object lives): the bench's fidelity reference embeds a task's texts once, not
    once per variant it is compared with."""

    def __init__(self, encoder: Encoder):
        self.encoder, self.name, self.labels = encoder, encoder.name, encoder.labels
        self._embedded: dict[tuple[str, ...], np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        key = tuple(texts)
        if key not in self._embedded:
            self._embedded[key] = self.encoder.embed(texts)
        return self._embedded[key]

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        return self.encoder.logits(texts, pairs)


class OrtEncoder:
    """An exported folder (``model.onnx`` + tokenizer + config.json) run by ONNX Runtime, or by ``session`` when
    given (anything with ``get_inputs``, ``get_outputs`` and ``run`` as ONNX Runtime has them: an OpenVINO IR
    folder's :class:`export.openvino_export.OpenVINOSession`)."""

    def __init__(self, folder: Path | str, *, provider: str = "cpu", threads: int | None = None,
                 max_length: int = 128, batch_size: int = 32, name: str | None = None, session=None):
        from export.sessions import make_session

        folder = Path(folder)
        model = folder / "model.onnx"
        if session is None and not model.is_file():
            raise UserError(f"{folder} has no model.onnx: run `compress export` first")
        self.session = session or make_session(model, provider, threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.tokenizer = load_tokenizer(folder, max_length)
        self.labels = head_labels(folder / "config.json") if "logits" in self.output_names else None
        self.batch_size = batch_size
        self.name = name or folder.name

    def _run(self, output: str, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        if output not in self.output_names:
            raise UserError(f"{self.name} has no '{output}' output (it has {', '.join(self.output_names)}): "
                            "export the student for embeddings, a fine-tuned model for logits")
        parts: list[tuple[list[int], np.ndarray]] = []
        for index in length_sorted_batches(texts, self.batch_size):
            batch = encode_batch(self.tokenizer, [texts[i] for i in index], [pairs[i] for i in index] if pairs else None)
            feeds = {k: v for k, v in batch.items() if k in self.input_names}
            (out,) = self.session.run([output], feeds)
            parts.append((index, mean_pool(out, batch["attention_mask"]) if out.ndim == 3 else out))
        return _unsort(parts, len(texts))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._run("last_hidden_state", texts, None)

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        return self._run("logits", texts, pairs)


def sentence_pooling(folder: Path | str) -> tuple[str, bool]:
    """(pooling mode ``mean`` | ``cls`` | ``max``, whether to L2-normalize) from the folder's sentence-transformers
    files (modules.json, 1_Pooling/, 2_Normalize/); mean and no normalization for a folder without them."""
    from compress.sentence_modules import teacher_pooling

    found = teacher_pooling(folder)
    flags = found["pooling"]
    mode = "cls" if flags.get("pooling_mode_cls_token") else "max" if flags.get("pooling_mode_max_tokens") else "mean"
    return mode, bool(found["normalize"])


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str = "mean", normalize: bool = False) -> np.ndarray:
    """Sentence embeddings from token vectors: hidden ``[B, T, H]``, mask ``[B, T]`` → ``[B, H]`` float32, pooled by
    ``mode`` (mean over kept tokens, the first token, or the max over kept tokens), then L2-normalized if asked."""
    if mode == "cls":
        out = np.asarray(hidden[:, 0], dtype=np.float32)
    elif mode == "max":
        out = np.where(np.asarray(mask)[..., None] > 0, hidden, -np.inf).max(axis=1).astype(np.float32)
    else:
        out = mean_pool(hidden, mask)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


class TextRequest:
    """One user request as a no-argument callable (what the end-to-end timing times): ``texts`` (B strings) →
    tokenized (truncated at the tokenizer's length, padded to the longest) → the model via ``session.run`` (ONNX
    Runtime or :class:`export.openvino_export.OpenVINOSession`) → ``[B, H]`` float32 pooled and, where the folder's
    sentence-transformers modules say so, normalized; a classifier (no ``last_hidden_state``) returns ``[B, C]``
    logits. ``session``'s declared integer input types are honoured, as :class:`bench.ort_session.SessionRunner` does."""

    def __init__(self, session, tokenizer, texts: list[str], folder: Path | str):
        self.session, self.tokenizer, self.texts = session, tokenizer, list(texts)
        outputs = [o.name for o in session.get_outputs()]
        self.output = "last_hidden_state" if "last_hidden_state" in outputs else "logits" if "logits" in outputs else outputs[0]
        types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
        self.inputs = {i.name: types.get(getattr(i, "type", None), np.int64) for i in session.get_inputs()}
        self.mode, self.normalize = sentence_pooling(folder)

    def __call__(self) -> np.ndarray:
        batch = encode_batch(self.tokenizer, self.texts)
        feeds = {name: batch[name].astype(dtype, copy=False) for name, dtype in self.inputs.items()}
        (out,) = self.session.run([self.output], feeds)
        return pool(out, batch["attention_mask"], self.mode, self.normalize) if out.ndim == 3 else out


def _unsort(parts: list[tuple[list[int], np.ndarray]], n: int) -> np.ndarray:
    """Put per-batch rows back in the caller's order."""
    width = parts[0][1].shape[1]
    out = np.empty((n, width), dtype=np.float32)
    for index, rows in parts:
        out[index] = rows
    return out
