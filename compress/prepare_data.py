"""``compress prepare-data``: stream raw corpora once into token shards (compress.token_shards).

The reader streams documents (compress.corpus), worker processes tokenize chunks of them with the fast
tokenizer (no special tokens), and each document longer than ``max_length`` becomes several windows
(``long_lines="window"``, the default) or is cut to its first one (``"truncate"``); every sequence gets
the tokenizer's own special tokens. A preparation is written in ``.NAME.partial/`` beside its target:

- every finished shard is recorded in ``progress.json`` with the number of input records it consumed,
  so an interrupted preparation resumes after its last shard (the records before it are read again,
  not tokenized again); a different input or setting restarts it;
- ``corpus.json`` (stats, shard checksums, the input's fingerprint) is written last, then the folder
  replaces the target in one rename, so a half-prepared corpus never looks complete;
- an exclusive lock (``.NAME.lock``) keeps two processes from preparing the same corpus at once.

The input's fingerprint (each file's size, mtime and a hash of samples of its content) is taken here,
once; a distillation compares it to notice a changed corpus without reading every byte.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from compress.corpus import CorpusStats, ReadPosition, corpus_files, iter_documents, missing_corpus, no_usable_line
from compress.errors import Interrupted, UserError
from compress.run_dir import atomic_write_text, now
from compress.token_shards import CORPUS_JSON, FORMAT, FORMAT_VERSION, ShardWriter, TokenCorpus, token_dtype

log = logging.getLogger(__name__)

SET_JSON = "prepared.json"  # a folder written by `compress prepare-data --out`: one subfolder per corpus
PROGRESS = "progress.json"
SHARD_TOKENS = 1 << 27  # ~128M tokens (256-512 MB) per shard: the unit of resume
CHUNK_CHARS = 1 << 20  # text per task sent to a worker
INLINE_BYTES = 16 << 20  # inputs smaller than this are tokenized in-process (no worker start-up)
SAMPLE_BYTES = 1 << 18  # per sample of a file's content in its fingerprint
LongLines = Literal["window", "truncate"]


# ---------------------------------------------------------------------------------------------------------
# What the workers need to know about the tokenizer


@dataclass(frozen=True)
class TokenizerSpec:
    """A fast tokenizer reduced to what preparation needs: its serialised pipeline, the special ids it puts
    before and after a single sequence, and the vocabulary size."""

    json: str
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    vocab_size: int

    @functools.cached_property
    def fingerprint(self) -> str:  # cached: hashing a 250k-piece vocabulary takes ~15 ms
        digest = hashlib.sha256(self.json.encode("utf-8"))
        digest.update(json.dumps([self.prefix, self.suffix, self.vocab_size]).encode())
        return digest.hexdigest()


def tokenizer_spec(tokenizer) -> TokenizerSpec:
    """The spec of a Hugging Face fast tokenizer (its single-sequence template is found by probing)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"the tokenizer of {getattr(tokenizer, 'name_or_path', '?')} is not a fast tokenizer "
                        "(no tokenizer.json): save it with a fast tokenizer first")
    probe = "hello world"
    with_specials = tokenizer(probe)["input_ids"]
    content = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for i in range(len(with_specials) - len(content) + 1):
        if with_specials[i : i + len(content)] == content:
            prefix, suffix = with_specials[:i], with_specials[i + len(content) :]
            break
    else:
        raise UserError(f"cannot find where the special tokens of {tokenizer.name_or_path} go: it is not a "
                        "single-sequence template (BERT/RoBERTa style)")
    return TokenizerSpec(json=backend.to_str(), prefix=tuple(prefix), suffix=tuple(suffix), vocab_size=len(tokenizer))


# ---------------------------------------------------------------------------------------------------------
# Tokenizing a chunk (runs in the worker processes)

_WORKER: dict[str, Any] = {}


def _init_worker(spec: TokenizerSpec, max_length: int, long_lines: LongLines, worker: bool = False) -> None:
    from tokenizers import Tokenizer

    if worker:  # Ctrl-C is for the main process, which stops the pool and keeps the finished shards
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _WORKER.get("spec") is not spec:  # parsing a 250k-piece tokenizer takes over a second: once per process
        tokenizer = Tokenizer.from_str(spec.json)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        _WORKER.update(tokenizer=tokenizer, spec=spec)
    _WORKER.update(max_length=max_length, long_lines=long_lines)


def _within(counts: np.ndarray) -> np.ndarray:
    """[0, 1, .., c0-1, 0, 1, .., c1-1, ...] for ``counts [n]``."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def encode_chunk(texts: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Token ids of ``texts`` as sequences with special tokens: (flat ids, lengths ``[S]``, counts).

    A text of ``n`` content tokens gives ceil(n / L) windows (``L = max_length - specials``), or only the
    first with ``truncate``; a text with no tokens at all is skipped and counted.
    """
    tokenizer, spec = _WORKER["tokenizer"], _WORKER["spec"]
    prefix, suffix = np.asarray(spec.prefix, np.int64), np.asarray(spec.suffix, np.int64)
    room = _WORKER["max_length"] - len(prefix) - len(suffix)
    dtype = token_dtype(spec.vocab_size)
    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets we do not store: ~20% faster.
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encodings = encode(texts, add_special_tokens=False)
    ids = [e.ids for e in encodings]
    n = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for row in ids for i in row), dtype=dtype, count=int(n.sum()))
    counts = {"no_tokens": int((n == 0).sum()), "windowed_documents": int((n > room).sum()), "truncated_tokens": 0}
    doc_start = np.cumsum(n) - n
    if _WORKER["long_lines"] == "truncate":
        win_len = np.minimum(n, room)
        win_len = win_len[win_len > 0]
        src = np.repeat(doc_start[n > 0], win_len) + _within(win_len)
        counts["truncated_tokens"] = int(n.sum() - win_len.sum())
        counts["windowed_documents"] = 0
    else:
        windows = -(-n // room)
        win_k = _within(windows)
        win_len = np.minimum(room, np.repeat(n, windows) - win_k * room)
        src = np.arange(len(flat), dtype=np.int64)
    out_len = win_len + len(prefix) + len(suffix)
    out = np.empty(int(out_len.sum()), dtype=dtype)
    win_start = np.cumsum(out_len) - out_len
    out[np.repeat(win_start + len(prefix), win_len) + _within(win_len)] = flat[src]
    for j, token in enumerate(prefix):
        out[win_start + j] = token
    for j, token in enumerate(suffix):
        out[win_start + len(prefix) + win_len + j] = token
    return out, out_len, counts


# ---------------------------------------------------------------------------------------------------------
# Fingerprints and the lock


def source_fingerprint(path: Path) -> dict[str, Any]:
    """Each input file's size, mtime and a SHA-256 of three samples of it (start, middle, end); cheap at
    any corpus size, and changed by any edit that changes a size, a time stamp or a sampled byte."""
    files = []
    for unit in corpus_files(path):
        for file in (sorted(p for p in unit.rglob("*") if p.is_file()) if unit.is_dir() else [unit]):
            st = file.stat()
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for at in sorted({0, max(0, st.st_size // 2 - SAMPLE_BYTES // 2), max(0, st.st_size - SAMPLE_BYTES)}):
                    f.seek(at)
                    digest.update(f.read(SAMPLE_BYTES))
            files.append({"file": str(file.relative_to(path)) if file != path else file.name, "size": st.st_size,
                          "mtime_ns": st.st_mtime_ns, "sample_sha256": digest.hexdigest()})
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, "bytes": sum(f["size"] for f in files), "files": len(files)}


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock for preparing ``target``; another process waits (and says so)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is preparing %s", target)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------------------
# Preparing one corpus


@dataclass
class PrepareSettings:
    """What shapes the shards (part of the cache key): length, what to do with long lines, the text field."""

    max_length: int = 128
    long_lines: LongLines = "window"
    text_field: str = "text"
    max_bad_share: float = 0.1

    def key(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "long_lines": self.long_lines, "text_field": self.text_field}


def _tokens_room(spec: TokenizerSpec, settings: PrepareSettings) -> None:
    if settings.max_length <= len(spec.prefix) + len(spec.suffix):
        raise UserError(f"max_length {settings.max_length} leaves no room beside the {len(spec.prefix) + len(spec.suffix)} "
                        "special tokens: choose a larger --max-length")


def check_quality(name: str, stats: dict[str, int], settings: PrepareSettings) -> None:
    """Refuse a corpus that is mostly not text (a binary file, the wrong JSON field)."""
    bad = stats["undecodable"] + stats["not_text"]
    if stats["documents"] and bad / stats["documents"] > settings.max_bad_share:
        raise UserError(
            f"corpus {name}: {bad} of {stats['documents']} records are not text ({stats['undecodable']} not UTF-8, "
            f"{stats['not_text']} without a '{settings.text_field}' string), more than data.max_bad_share="
            f"{settings.max_bad_share}: check that it is a text corpus (and its text_field), or raise data.max_bad_share"
        )


class _Encoder:
    """Tokenizes chunks in order: in this process for small inputs, else in worker processes with a bounded
    number of chunks in flight (so reading never runs far ahead of tokenizing)."""

    def __init__(self, spec: TokenizerSpec, settings: PrepareSettings, workers: int):
        args = (spec, settings.max_length, settings.long_lines)
        self.pool = None
        if workers > 1:
            import multiprocessing

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(*args, True))
        else:
            _init_worker(*args)
        self.in_flight: collections.deque = collections.deque()
        self.limit = 2 * max(1, workers)

    def submit(self, chunk: list[str], tag: Any) -> Iterator[tuple[Any, tuple]]:
        """Queue ``chunk``; yield the (tag, result) pairs that are due, oldest first."""
        if self.pool is None:
            yield tag, encode_chunk(chunk)
            return
        self.in_flight.append((tag, self.pool.submit(encode_chunk, chunk)))
        while len(self.in_flight) >= self.limit:
            tag0, future = self.in_flight.popleft()
            yield tag0, future.result()

    def drain(self) -> Iterator[tuple[Any, tuple]]:
        while self.in_flight:
            tag, future = self.in_flight.popleft()
            yield tag, future.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Progress:
    """A line on stderr every few seconds: share of the input read, tokens/s and the ETA."""

    def __init__(self, name: str, position: ReadPosition, every_s: float = 5.0):
        self.name, self.position, self.every = name, position, every_s
        self.t0 = self.last = time.perf_counter()
        self.start_fraction = None
        self.tokens = 0
        self.printed = False

    def update(self, tokens: int, force: bool = False) -> None:
        self.tokens += tokens
        t = time.perf_counter()
        if self.start_fraction is None:
            self.start_fraction = self.position.fraction
        if (not force and t - self.last < self.every) or (force and not self.printed):
            return
        self.last, self.printed = t, True
        elapsed = t - self.t0
        fraction = self.position.fraction
        done = fraction - self.start_fraction
        eta = elapsed / done * (1 - fraction) if done > 0 else float("nan")
        print(f"prepare {self.name}: {100 * fraction:5.1f}% of {self.position.total / 1e6:,.0f} MB  "
              f"{self.tokens / max(elapsed, 1e-9) / 1e6:.2f} M tokens/s  eta {eta:,.0f} s", file=sys.stderr, flush=True)


def _empty_counts() -> dict[str, int]:
    return {"no_tokens": 0, "windowed_documents": 0, "truncated_tokens": 0, "sequences": 0, "tokens": 0}


def _swap_in(partial: Path, target: Path) -> None:
    """Replace ``target`` with the finished ``partial`` folder; the old one is removed only afterwards."""
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def is_current(target: Path, source: Path, spec: TokenizerSpec, settings: PrepareSettings,
               fingerprint: dict[str, Any] | None = None) -> bool:
    """Whether ``target`` is a complete preparation of ``source`` as it is now, with this tokenizer and settings."""
    meta_path = target / CORPUS_JSON
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    fingerprint = fingerprint or source_fingerprint(source)
    return (meta.get("complete") and meta.get("version") == FORMAT_VERSION
            and meta["source"]["fingerprint"]["sha256"] == fingerprint["sha256"]
            and meta["tokenizer"]["fingerprint"] == spec.fingerprint and meta["settings"] == settings.key())


def prepare_corpus(source: Path, target: Path, spec: TokenizerSpec, settings: PrepareSettings, *,
                   workers: int = 1, shard_tokens: int = SHARD_TOKENS, name: str | None = None) -> Path:
    """Prepare ``source`` into ``target`` (a prepared corpus folder) unless it is already current; returns ``target``."""
    source, target = Path(source), Path(target)
    name = name or target.name
    _tokens_room(spec, settings)
    if not source.exists():
        raise missing_corpus(source)
    with _locked(target):
        fingerprint = source_fingerprint(source)
        if is_current(target, source, spec, settings, fingerprint):
            log.info("prepare %s: already prepared in %s", name, target)
            return target
        identity = {"source": str(source.resolve()), "fingerprint": fingerprint["sha256"], "tokenizer": spec.fingerprint,
                    "settings": settings.key(), "version": FORMAT_VERSION}
        partial = target.parent / f".{target.name}.partial"
        progress = _read_progress(partial, identity)
        if progress is None:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            progress = {"identity": identity, "shards": [], "documents": 0, "counts": _empty_counts(), "seconds": 0.0}
        else:
            log.info("prepare %s: resuming after %d shards (%d records)", name, len(progress["shards"]), progress["documents"])
        try:
            _prepare_into(source, partial, spec, settings, progress, workers, shard_tokens, name, fingerprint)
        except KeyboardInterrupt:
            raise Interrupted(f"preparation of {source} interrupted; its finished shards are kept in {partial}: run the "
                              "same command again to resume") from None
        _swap_in(partial, target)
    return target


def _read_progress(partial: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The progress of an interrupted preparation of the same input and settings, or None (start afresh)."""
    try:
        progress = json.loads((partial / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if progress.get("identity") != identity:
        return None
    if any(not (partial / f"{s['name']}.bin").is_file() for s in progress["shards"]):
        return None
    for stray in partial.glob(".*.tmp"):  # the shard that was being written when the process stopped
        stray.unlink()
    return progress


def _prepare_into(source: Path, partial: Path, spec: TokenizerSpec, settings: PrepareSettings, progress: dict[str, Any],
                  workers: int, shard_tokens: int, name: str, fingerprint: dict[str, Any]) -> None:
    t0, base_seconds = time.perf_counter(), progress["seconds"]
    dtype = token_dtype(spec.vocab_size)
    stats, position = CorpusStats(), ReadPosition()
    skip = progress["documents"]
    counts = dict(progress["counts"])
    documents = iter_documents(source, settings.text_field, stats, position)
    for _ in range(skip):  # records the finished shards already hold: read again, not tokenized again
        next(documents)
    if skip:
        log.info("prepare %s: skipped %d records already prepared", name, skip)
    meter = _Progress(name, position)
    encoder = _Encoder(spec, settings, workers if fingerprint["bytes"] >= INLINE_BYTES else 1)
    writer = ShardWriter(partial, len(progress["shards"]), dtype)

    def take(tag, result) -> None:
        nonlocal writer
        tokens, lengths, chunk_counts = result
        writer.add(tokens, lengths)
        for key, value in chunk_counts.items():
            counts[key] += value
        counts["sequences"] += len(lengths)
        counts["tokens"] += len(tokens)
        meter.update(len(tokens))
        progress["documents"], progress["reader"] = tag
        if writer.tokens >= shard_tokens:
            commit()
            writer = ShardWriter(partial, len(progress["shards"]), dtype)

    def commit() -> None:
        progress["shards"].append(writer.close())
        progress["counts"] = dict(counts)
        progress["seconds"] = base_seconds + time.perf_counter() - t0
        atomic_write_text(partial / PROGRESS, json.dumps(progress) + "\n")

    try:
        chunk: list[str] = []
        chars = 0
        for text in documents:
            if text is not None:
                chunk.append(text)
                chars += len(text)
            if chars >= CHUNK_CHARS:
                for done in encoder.submit(chunk, (stats.documents, dataclasses.asdict(stats))):
                    take(*done)
                chunk, chars = [], 0
        if chunk:
            for done in encoder.submit(chunk, (stats.documents, dataclasses.asdict(stats))):
                take(*done)
        for done in encoder.drain():
            take(*done)
        progress["documents"], progress["reader"] = stats.documents, dataclasses.asdict(stats)
        if writer.sequences or not progress["shards"]:
            commit()
        else:
            writer.abort()
    except BaseException:
        writer.abort()
        encoder.close()
        raise
    encoder.close()
    meter.update(0, force=True)
    reader = progress["reader"]
    all_stats = {"files": reader["files"], "documents": reader["documents"], "kept_documents": reader["lines"],
                 "empty": reader["empty"], "undecodable": reader["undecodable"], "not_text": reader["not_text"], **counts}
    if not counts["sequences"]:
        raise no_usable_line(source, stats, settings.text_field)
    check_quality(str(source), all_stats, settings)
    seconds = base_seconds + time.perf_counter() - t0
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "complete": True, "created": now(), "name": name,
            "source": {"path": str(source.resolve()), "fingerprint": fingerprint},
            "tokenizer": {"fingerprint": spec.fingerprint, "prefix": list(spec.prefix), "suffix": list(spec.suffix)},
            "settings": settings.key(), "max_length": settings.max_length, "dtype": dtype.name,
            "vocab_size": spec.vocab_size, "stats": all_stats, "shards": progress["shards"],
            "seconds": round(seconds, 2), "tokens_per_s": round(counts["tokens"] / seconds) if seconds else None}
    atomic_write_text(partial / CORPUS_JSON, json.dumps(meta, indent=2) + "\n")
    (partial / PROGRESS).unlink(missing_ok=True)
    log.info("prepare %s: %d records → %d sequences, %d tokens in %d shards (%d windowed, skipped %d empty, %d not "
             "UTF-8, %d non-text, %d without tokens) in %.1f s", name, all_stats["documents"], counts["sequences"],
             counts["tokens"], len(progress["shards"]), counts["windowed_documents"], all_stats["empty"],
             all_stats["undecodable"], all_stats["not_text"], counts["no_tokens"], seconds)


# ---------------------------------------------------------------------------------------------------------
# Resolving a distillation's corpora: prepared folders as they are, raw corpora through the cache


def cache_key(source: Path, spec: TokenizerSpec, settings: PrepareSettings) -> str:
    """The cache entry's name: the input's path and fingerprint, the tokenizer and the settings."""
    fingerprint = source_fingerprint(source)
    key = hashlib.sha256(json.dumps({"source": str(source.resolve()), "fingerprint": fingerprint["sha256"],
                                     "tokenizer": spec.fingerprint, "settings": settings.key(),
                                     "version": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()
    stem = source.name.split(".")[0] or "corpus"
    return f"{stem}-{key[:16]}"


def prepared_folders(path: Path) -> list[Path] | None:
    """The prepared corpus folders ``path`` stands for (itself, or each corpus of a prepare-data output),
    or None when ``path`` is a raw corpus."""
    if (path / CORPUS_JSON).is_file():
        return [path]
    set_json = path / SET_JSON
    if set_json.is_file():
        record = json.loads(set_json.read_text(encoding="utf-8"))
        if not record.get("complete"):
            raise UserError(f"{path} is an unfinished `compress prepare-data` output: run that command again to finish it")
        return [path / name for name in record["corpora"]]
    return None


def text_sources(path: Path) -> list[Path]:
    """The raw text behind a corpus path: itself, or the inputs a prepared folder was made from (for the
    samples of text that export and bench need)."""
    folders = prepared_folders(path)
    if folders is None:
        return [path]
    sources = [Path(TokenCorpus(f).meta["source"]["path"]) for f in folders]
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise UserError(f"the text that {path} was prepared from is not here ({', '.join(missing)}): pass real text "
                        "with --calib-corpus (export) or --text (bench)")
    return sources


def open_prepared(folder: Path, spec: TokenizerSpec, settings: PrepareSettings, teacher: str) -> TokenCorpus:
    """A prepared corpus, checked against the tokenizer and length of this run and against its source."""
    corpus = TokenCorpus(folder)
    meta = corpus.meta
    if meta["tokenizer"]["fingerprint"] != spec.fingerprint:
        raise UserError(f"{folder} was prepared with another tokenizer than {teacher}'s: prepare it with "
                        f"compress prepare-data --teacher {teacher}, or pass the raw corpus to --corpus")
    if meta["max_length"] != settings.max_length:
        raise UserError(f"{folder} was prepared for max length {meta['max_length']}, this run asks for "
                        f"{settings.max_length}: pass --max-length {meta['max_length']}, or prepare it again")
    source = Path(meta["source"]["path"])
    if source.exists() and source_fingerprint(source)["sha256"] != meta["source"]["fingerprint"]["sha256"]:
        raise UserError(f"corpus {source} has changed since it was prepared into {folder}: prepare it again "
                        "(compress prepare-data), or pass the raw corpus to --corpus to have it prepared")
    check_quality(str(folder), meta["stats"], settings)
    return corpus


def resolve_corpus(path: Path, spec: TokenizerSpec, settings: PrepareSettings, *, teacher: str, cache: Path,
                   workers: int) -> list[TokenCorpus]:
    """The token corpora of one ``--corpus`` path: prepared folders as they are; a raw corpus is prepared
    into ``cache`` (reused while input, tokenizer and settings stay the same)."""
    folders = prepared_folders(path)
    if folders is None:
        if not path.exists():
            raise missing_corpus(path)
        target = cache / cache_key(path, spec, settings)
        folders = [prepare_corpus(path, target, spec, settings, workers=workers, name=path.name)]
    return [open_prepared(folder, spec, settings, teacher) for folder in folders]


def default_workers() -> int:
    return max(1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def prepare_set(sources: Sequence[Path], out: Path, spec: TokenizerSpec, settings: PrepareSettings, *,
                workers: int, shard_tokens: int = SHARD_TOKENS) -> list[Path]:
    """``compress prepare-data``: each source into ``out/NAME/`` and ``out/prepared.json`` listing them."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: choose a folder")
    _tokens_room(spec, settings)
    for source in sources:  # before anything is written
        if not source.exists():
            raise missing_corpus(source)
    names: list[str] = []
    for source in sources:
        stem = source.name.split(".")[0] or "corpus"
        candidate, n = stem, 2
        while candidate in names:
            candidate, n = f"{stem}-{n}", n + 1
        names.append(candidate)
    out.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "version": FORMAT_VERSION, "complete": False, "corpora": names,
              "sources": [str(s) for s in sources], "settings": settings.key()}
    atomic_write_text(out / SET_JSON, json.dumps(record, indent=2) + "\n")
    folders = [prepare_corpus(s, out / n, spec, settings, workers=workers, shard_tokens=shard_tokens, name=n)
               for s, n in zip(sources, names)]
    for folder in folders:
        check_quality(str(folder), TokenCorpus(folder).meta["stats"], settings)
    atomic_write_text(out / SET_JSON, json.dumps({**record, "complete": True, "finished": now()}, indent=2) + "\n")
    return folders


def piece_counts(corpora: Sequence[TokenCorpus], spec: TokenizerSpec) -> collections.Counter:
    """How often each id occurs in the corpora's sequences, special tokens of the template excluded
    (the counts :func:`compress.vocab_trim.count_pieces` gives on the text), streamed shard by shard."""
    total = np.zeros(spec.vocab_size, dtype=np.int64)
    for corpus in corpora:
        for tokens in corpus.token_chunks():
            total += np.bincount(tokens, minlength=spec.vocab_size)
        for token in (*spec.prefix, *spec.suffix):
            total[token] -= len(corpus)
    return collections.Counter({int(i): int(total[i]) for i in np.flatnonzero(total > 0)})
