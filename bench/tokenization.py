"""Tokenising for ONNX Runtime without torch: the folder's ``tokenizer.json`` through the ``tokenizers`` library.

``transformers`` imports torch on import, so the torch-free side of ``bench`` reads the fast tokenizer
file directly and takes the padding token from ``tokenizer_config.json`` / ``special_tokens_map.json``.
The encodings are the ones ``AutoTokenizer`` produces for the same folder (a test checks it).

Loaded tokenizers are shared: every variant of a run carries the same ``tokenizer.json`` (17 MB for XLM-R's 250k
vocabulary, about 0.7 s to parse and 260 MiB once parsed), so one parse per content and length serves them all.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from compress.errors import UserError


def _pad_token(folder: Path) -> str | None:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
            if isinstance(value, dict):
                value = value.get("content")
            if value:
                return value
    return None


# (sha1 of tokenizer.json, pad token, max_length) → tokenizer, least recently used first. Six: the bench's two
# lengths and unbounded form of a run's tokenizer and of another (a teacher with its own vocabulary).
_LOADED: OrderedDict[tuple[str, str | None, int | None], Tokenizer] = OrderedDict()
_KEEP = 6


def load_tokenizer(folder: Path | str, max_length: int | None) -> Tokenizer:
    """The folder's fast tokenizer, truncating to ``max_length`` and padding to the longest in a batch; with
    ``max_length`` None neither (the raw ids, to cut inputs from).

    Shared between folders whose ``tokenizer.json`` and pad token are the same: use it, do not reconfigure it."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{folder} has no tokenizer.json: save the model folder with a fast tokenizer (save_pretrained)")
    data = path.read_bytes()
    pad = _pad_token(folder)
    key = (hashlib.sha1(data).hexdigest(), pad, max_length)
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    tokenizer = Tokenizer.from_str(data.decode("utf-8"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if max_length is not None:
        tokenizer.enable_truncation(max_length=max_length)
        pad_id = tokenizer.token_to_id(pad) if pad else None
        tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad or "[PAD]")
    _LOADED[key] = tokenizer
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return tokenizer


def encode_batch(tokenizer: Tokenizer, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
    """int64 arrays ``input_ids``, ``attention_mask``, ``token_type_ids``, each [B, T]."""
    inputs = list(zip(texts, pairs)) if pairs is not None else texts
    encodings = tokenizer.encode_batch(inputs)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
