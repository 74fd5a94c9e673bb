"""Tokenising for ONNX Runtime without torch: the folder's ``tokenizer.json`` through the ``tokenizers`` library.

``transformers`` imports torch on import, so the torch-free side of ``bench`` reads the fast tokenizer
file directly and takes the padding token from ``tokenizer_config.json`` / ``special_tokens_map.json``.
The encodings are the ones ``AutoTokenizer`` produces for the same folder (a test checks it).
"""

from __future__ import annotations

import json
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


def load_tokenizer(folder: Path | str, max_length: int) -> Tokenizer:
    """The folder's fast tokenizer, truncating to ``max_length`` and padding to the longest in a batch."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{folder} has no tokenizer.json: save the model folder with a fast tokenizer (save_pretrained)")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    pad = _pad_token(folder)
    pad_id = tokenizer.token_to_id(pad) if pad else None
    tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad or "[PAD]")
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
