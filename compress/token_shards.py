"""Token shards: the on-disk format of a prepared corpus, written once and memory-mapped by training.

As in Megatron-LM's indexed datasets, a shard is a flat array of token ids (``shard-NNNNN.bin``,
uint16 when the vocabulary fits, else uint32) and an index of sequence offsets (``shard-NNNNN.idx``,
int64, ``sequences + 1`` entries, starting at 0). Sequence ``i`` of a shard is
``tokens[offsets[i]:offsets[i + 1]]``, special tokens included, ready to pad. ``corpus.json`` beside
the shards lists them with their sizes and SHA-256 checksums; it is written last, so a folder without
it is not a prepared corpus.

Opening a corpus checks every shard's file sizes (cheap; a truncated shard is refused at once); rows
are checked when read (length and id range), and :meth:`TokenCorpus.verify` compares the checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import UserError

CORPUS_JSON = "corpus.json"
FORMAT = "relation-compress-token-shards"
FORMAT_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id of the vocabulary."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _fsync_write(path: Path, chunks) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in chunks:
            data = memoryview(np.ascontiguousarray(chunk)).cast("B")
            digest.update(data)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


class ShardWriter:
    """Appends sequences to one shard in ``folder``; :meth:`close` writes its index and makes it visible.

    ``add(tokens, lengths)``: ``tokens`` the flat ids of several sequences, ``lengths [n]`` their sizes.
    """

    def __init__(self, folder: Path, index: int, dtype: np.dtype):
        self.name = f"shard-{index:05d}"
        self.folder, self.dtype = folder, np.dtype(dtype)
        self._tmp = folder / f".{self.name}.bin.tmp"
        self._file = open(self._tmp, "wb")
        self._digest = hashlib.sha256()
        self._lengths: list[np.ndarray] = []
        self.tokens = 0
        self.sequences = 0

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(tokens, dtype=self.dtype)).cast("B")
        self._digest.update(data)
        self._file.write(data)
        self._lengths.append(np.asarray(lengths, dtype=np.int64))
        self.tokens += int(len(tokens))
        self.sequences += int(len(lengths))

    def close(self) -> dict[str, Any]:
        """Flush both files to disk, rename them into place, and return the shard's record."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx_tmp = self.folder / f".{self.name}.idx.tmp"
        idx_sha = _fsync_write(idx_tmp, [offsets])
        os.replace(idx_tmp, self.folder / f"{self.name}.idx")
        os.replace(self._tmp, self.folder / f"{self.name}.bin")
        return {"name": self.name, "sequences": self.sequences, "tokens": self.tokens,
                "sha256": {"bin": self._digest.hexdigest(), "idx": idx_sha}}

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TokenCorpus:
    """One prepared corpus, memory-mapped: ``len(corpus)`` sequences, ``corpus[i]`` → ids ``[T_i]``.

    Picklable (DataLoader workers): the memory maps are opened lazily in each process.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        meta_path = self.folder / CORPUS_JSON
        if not meta_path.is_file():
            raise UserError(f"{self.folder} is not a prepared corpus (no {CORPUS_JSON}; an interrupted preparation?): "
                            "run compress prepare-data again")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{meta_path} is damaged: prepare the corpus again (compress prepare-data)") from None
        if self.meta.get("format") != FORMAT or self.meta.get("version") != FORMAT_VERSION or not self.meta.get("complete"):
            raise UserError(f"{self.folder} is not a complete prepared corpus of format {FORMAT} v{FORMAT_VERSION}: "
                            "prepare it again with this version (compress prepare-data)")
        self.dtype = np.dtype(self.meta["dtype"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.max_length = int(self.meta["max_length"])
        self.shards = self.meta["shards"]
        for shard in self.shards:
            for suffix, expected in ((".bin", shard["tokens"] * self.dtype.itemsize), (".idx", (shard["sequences"] + 1) * 8)):
                path = self.folder / (shard["name"] + suffix)
                size = path.stat().st_size if path.exists() else None
                if size != expected:
                    raise UserError(f"shard {path} is {'missing' if size is None else f'{size} bytes, expected {expected}'} "
                                    "(truncated or corrupt): prepare the corpus again (compress prepare-data, or delete "
                                    f"{self.folder} to have distill rebuild it)")
        self.starts = np.cumsum([0] + [s["sequences"] for s in self.shards])
        self._maps: list[tuple[np.ndarray, np.ndarray]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def tokens(self) -> int:
        return int(sum(s["tokens"] for s in self.shards))

    def _open(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._maps is None:
            self._maps = [(np.memmap(self.folder / f"{s['name']}.bin", dtype=self.dtype, mode="r", shape=(s["tokens"],))
                           if s["tokens"] else np.zeros(0, self.dtype),
                           np.memmap(self.folder / f"{s['name']}.idx", dtype=np.int64, mode="r", shape=(s["sequences"] + 1,)))
                          for s in self.shards]
        return self._maps

    def __getitem__(self, i: int) -> np.ndarray:
        """Token ids of sequence ``i`` (a view into the memory map), checked for length and id range."""
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        tokens, offsets = self._open()[shard]
        row = i - int(self.starts[shard])
        a, b = int(offsets[row]), int(offsets[row + 1])
        if not 0 <= a < b <= len(tokens) or b - a > self.max_length:
            raise UserError(f"shard {self.folder / self.shards[shard]['name']}.idx is corrupt (sequence {row}: "
                            f"offsets {a}..{b}): prepare the corpus again (compress prepare-data)")
        ids = tokens[a:b]
        if int(ids.max()) >= self.vocab_size:
            raise UserError(f"shard {self.folder / self.shards[shard]['name']}.bin is corrupt (id {int(ids.max())} "
                            f"outside the vocabulary of {self.vocab_size}): prepare the corpus again")
        return ids

    def verify(self) -> None:
        """Compare every shard's SHA-256 with the one recorded at preparation (reads every byte)."""
        for shard in self.shards:
            for suffix in ("bin", "idx"):
                path = self.folder / f"{shard['name']}.{suffix}"
                if _sha256_file(path) != shard["sha256"][suffix]:
                    raise UserError(f"shard {path} does not match its checksum (corrupt): prepare the corpus again")
