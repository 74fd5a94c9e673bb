"""Token shards: the on-disk format of a prepared corpus, written once, read by index in training.

As in Megatron-LM's indexed datasets, a shard is a flat array of token ids (``shard-NNNNN.bin``,
uint16 when the vocabulary fits, else uint32) and an index of sequence offsets (``shard-NNNNN.idx``,
int64, ``sequences + 1`` entries, starting at 0). Sequence ``i`` of a shard is
``tokens[offsets[i]:offsets[i + 1]]``, special tokens included, ready to pad. ``corpus.json`` beside
the shards lists them with their sizes and SHA-256 checksums; it is written last, so a folder without
it is not a prepared corpus.

Rows are read by index with ``os.pread`` (two small reads a row), not through memory maps: the kernel
maps 64 KB around every page a random read touches, and with memory maps the reader's resident memory
grew by 300 MB from a 0.1 GB to a 1 GB corpus in 50 steps (page cache, reclaimable, but counted as the
process's memory); with ``pread`` it stays flat (benchmarks/data_path.py, docs/benchmarks.md).

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


class ShardWriter:
    """Appends sequences to one shard in ``folder``; :meth:`close` writes its index and makes it visible.

    ``add(tokens, lengths)``: ``tokens`` the flat ids of several sequences, ``lengths [n]`` their sizes.
    """

    def __init__(self, folder: Path, index: int, dtype: np.dtype):
        self.name = f"shard-{index:05d}"
        self.folder, self.dtype = folder, np.dtype(dtype)
        self._tmp = {suffix: folder / f".{self.name}.{suffix}.tmp" for suffix in ("bin", "idx")}
        self._files = {suffix: open(path, "wb") for suffix, path in self._tmp.items()}
        self._digests = {suffix: hashlib.sha256() for suffix in self._tmp}
        self.tokens = 0
        self.sequences = 0
        self._write("idx", np.zeros(1, dtype=np.int64))

    def _write(self, suffix: str, array: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(array)).cast("B")
        self._digests[suffix].update(data)
        self._files[suffix].write(data)

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append sequences; both files grow as they come, so memory does not grow with the shard."""
        self._write("bin", np.asarray(tokens, dtype=self.dtype))
        self._write("idx", self.tokens + np.cumsum(lengths, dtype=np.int64))
        self.tokens += int(len(tokens))
        self.sequences += int(len(lengths))

    def close(self) -> dict[str, Any]:
        """Flush both files to disk, rename them into place, and return the shard's record."""
        for suffix, f in self._files.items():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        os.replace(self._tmp["idx"], self.folder / f"{self.name}.idx")
        os.replace(self._tmp["bin"], self.folder / f"{self.name}.bin")
        return {"name": self.name, "sequences": self.sequences, "tokens": self.tokens,
                "sha256": {suffix: d.hexdigest() for suffix, d in self._digests.items()}}

    def abort(self) -> None:
        for suffix, f in self._files.items():
            f.close()
            self._tmp[suffix].unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TokenCorpus:
    """One prepared corpus: ``len(corpus)`` sequences, ``corpus[i]`` → ids ``[T_i]``.

    Picklable (DataLoader workers): the files are opened lazily in each process.
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
        self._fds: list[tuple[int, int]] | None = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": None, "_pid": None}

    def __del__(self) -> None:
        if getattr(self, "_fds", None) is not None and self._pid == os.getpid():  # __init__ may have refused
            for pair in self._fds:
                for fd in pair:
                    os.close(fd)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def tokens(self) -> int:
        return int(sum(s["tokens"] for s in self.shards))

    def _open(self) -> list[tuple[int, int]]:
        if self._fds is None or self._pid != os.getpid():  # a forked DataLoader worker opens its own
            self._fds = [(os.open(self.folder / f"{s['name']}.bin", os.O_RDONLY),
                          os.open(self.folder / f"{s['name']}.idx", os.O_RDONLY)) for s in self.shards]
            self._pid = os.getpid()
        return self._fds

    def __getitem__(self, i: int) -> np.ndarray:
        """Token ids of sequence ``i`` ``[T_i]``, checked for length and id range."""
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        tokens_fd, offsets_fd = self._open()[shard]
        row = i - int(self.starts[shard])
        pair = os.pread(offsets_fd, 16, 8 * row)
        a, b = np.frombuffer(pair, dtype=np.int64).tolist() if len(pair) == 16 else (-1, -1)
        if not 0 <= a < b <= self.shards[shard]["tokens"] or b - a > self.max_length:
            raise UserError(f"shard {self.folder / self.shards[shard]['name']}.idx is corrupt (sequence {row}: "
                            f"offsets {a}..{b}): prepare the corpus again (compress prepare-data)")
        size = self.dtype.itemsize
        ids = np.frombuffer(os.pread(tokens_fd, (b - a) * size, a * size), dtype=self.dtype)
        if int(ids.max()) >= self.vocab_size:
            raise UserError(f"shard {self.folder / self.shards[shard]['name']}.bin is corrupt (id {int(ids.max())} "
                            f"outside the vocabulary of {self.vocab_size}): prepare the corpus again")
        return ids

    def token_chunks(self, chunk: int = 1 << 24):
        """Every token id of the corpus, in arrays of at most ``chunk`` (streamed; for counting pieces)."""
        for s in self.shards:
            path = self.folder / f"{s['name']}.bin"
            for start in range(0, s["tokens"], chunk):
                yield np.fromfile(path, dtype=self.dtype, count=min(chunk, s["tokens"] - start),
                                  offset=start * self.dtype.itemsize)

    def verify(self) -> None:
        """Compare every shard's SHA-256 with the one recorded at preparation (reads every byte)."""
        for shard in self.shards:
            for suffix in ("bin", "idx"):
                path = self.folder / f"{shard['name']}.{suffix}"
                if _sha256_file(path) != shard["sha256"][suffix]:
                    raise UserError(f"shard {path} does not match its checksum (corrupt): prepare the corpus again")
