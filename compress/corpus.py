"""Unlabelled text, streamed: text files, folders, ``.jsonl``, gzip, Parquet and ``datasets`` folders.

Nothing here holds a corpus in memory: :func:`iter_documents` yields one document (a line, a JSON
record, a row) at a time and counts what it skipped. Distillation reads prepared token shards
(``compress.prepare_data``); the small samples that export and bench need come from
:func:`sample_lines` and :func:`read_corpus` (capped).
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from compress.errors import UserError

log = logging.getLogger(__name__)

DATASET_MARKERS = ("dataset_info.json", "state.json")  # what `datasets.save_to_disk` writes beside the Arrow files
_ROW_BATCH = 4096


@dataclass
class CorpusStats:
    """What reading one corpus kept and skipped (documents = every record read, kept or not)."""

    files: int = 0
    documents: int = 0
    lines: int = 0  # kept documents
    empty: int = 0
    undecodable: int = 0
    not_text: int = 0  # records without a string in the text field, or malformed JSON


@dataclass
class Corpus:
    """The usable lines of one small corpus, in file order (see :func:`read_corpus`)."""

    path: Path
    lines: list[str]
    stats: CorpusStats = field(default_factory=CorpusStats)


@dataclass
class ReadPosition:
    """How far a stream has got: ``done`` of ``total`` units (bytes for files, rows for tables)."""

    done: float = 0.0
    total: float = 0.0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def is_dataset_folder(path: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (one split, or a DatasetDict)."""
    return path.is_dir() and (all((path / m).exists() for m in DATASET_MARKERS) or (path / "dataset_dict.json").exists())


def corpus_files(path: Path) -> list[Path]:
    """The files a corpus path stands for, sorted (a ``datasets`` folder is one unit)."""
    if path.is_file() or is_dataset_folder(path):
        return [path]
    files: list[Path] = []
    for p in sorted(path.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            files += corpus_files(p)
        elif p.is_file():
            files.append(p)
    return files


def _kind(file: Path) -> str:
    if file.is_dir():
        return "datasets"
    suffixes = file.suffixes[-2:-1] if file.suffix == ".gz" else file.suffixes[-1:]
    if suffixes and suffixes[0] in (".jsonl", ".ndjson"):
        return "jsonl"
    if file.suffix == ".parquet":
        return "parquet"
    return "text"


def _lines(file: Path, position: ReadPosition) -> Iterator[bytes]:
    """Raw lines; ``position.done`` advances by the bytes read from disk (compressed for .gz)."""
    start = position.done
    if file.suffix == ".gz":
        with open(file, "rb") as raw, gzip.open(raw, "rb") as f:
            for n, line in enumerate(f):
                if n % 1024 == 0:
                    position.done = start + raw.tell()
                yield line
    else:
        with open(file, "rb") as f:
            for line in f:
                position.done += len(line)
                yield line
    position.done = start + file.stat().st_size


def _text_lines(file: Path, jsonl: bool, text_field: str, stats: CorpusStats, position: ReadPosition) -> Iterator[str | None]:
    for raw in _lines(file, position):
        stats.documents += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.undecodable += 1
            yield None
            continue
        if jsonl and text.strip():
            try:
                text = json.loads(text).get(text_field)
            except (json.JSONDecodeError, AttributeError):
                text = None
            if not isinstance(text, str):
                stats.not_text += 1
                yield None
                continue
        yield text


def _column(batches, stats: CorpusStats, position: ReadPosition) -> Iterator[str | None]:
    """The values of a table's text column, batch by batch; a value that is not a string is counted and skipped."""
    for column in batches:
        position.done += len(column)
        for text in column:
            stats.documents += 1
            if not isinstance(text, str):
                stats.not_text += 1
                yield None
            else:
                yield text


def _parquet_rows(file: Path, text_field: str, stats: CorpusStats, position: ReadPosition) -> Iterator[str | None]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"reading Parquet ({file}) needs pyarrow: pip install pyarrow") from None
    parquet = pq.ParquetFile(file)
    if text_field not in parquet.schema_arrow.names:
        raise UserError(f"Parquet file {file} has no column '{text_field}' (it has {', '.join(parquet.schema_arrow.names)}): "
                        "set text_field in data.corpora")
    scale = file.stat().st_size / max(1, parquet.metadata.num_rows)
    rows = ReadPosition()
    batches = (b.column(0).to_pylist() for b in parquet.iter_batches(batch_size=_ROW_BATCH, columns=[text_field]))
    start = position.done
    for text in _column(batches, stats, rows):
        position.done = start + rows.done * scale
        yield text


def _dataset_rows(folder: Path, text_field: str, stats: CorpusStats, position: ReadPosition) -> Iterator[str | None]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"reading a datasets folder ({folder}) needs the datasets library: pip install datasets") from None
    data = datasets.load_from_disk(str(folder))
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data and len(data) != 1:
            raise UserError(f"datasets folder {folder} holds the splits {', '.join(data)}: point --corpus at one "
                            f"of them ({folder}/<split>)")
        data = data["train"] if "train" in data else next(iter(data.values()))
    if text_field not in data.column_names:
        raise UserError(f"datasets folder {folder} has no column '{text_field}' (it has {', '.join(data.column_names)}): "
                        "set text_field in data.corpora")
    size = sum(p.stat().st_size for p in folder.rglob("*.arrow"))
    scale = size / max(1, len(data))
    rows = ReadPosition()
    batches = (b[text_field] for b in data.select_columns([text_field]).iter(batch_size=_ROW_BATCH))
    start = position.done
    for text in _column(batches, stats, rows):
        position.done = start + rows.done * scale
        yield text


def iter_documents(path: Path | str, text_field: str = "text", stats: CorpusStats | None = None,
                   position: ReadPosition | None = None) -> Iterator[str | None]:
    """Every record of a corpus in order: its stripped text, or ``None`` for a skipped one (counted in
    ``stats``); ``position`` follows the bytes read. Streams: memory does not grow with the corpus."""
    path = Path(path)
    if not path.exists():
        raise missing_corpus(path)
    stats = stats if stats is not None else CorpusStats()
    position = position if position is not None else ReadPosition()
    files = corpus_files(path)
    if not files:
        raise UserError(f"corpus folder {path} holds no files: point --corpus at text files")
    position.total = position.total or float(sum(_size(f) for f in files))
    for file in files:
        stats.files += 1
        kind = _kind(file)
        try:
            if kind == "parquet":
                records = _parquet_rows(file, text_field, stats, position)
            elif kind == "datasets":
                records = _dataset_rows(file, text_field, stats, position)
            else:
                records = _text_lines(file, kind == "jsonl", text_field, stats, position)
            for text in records:
                if text is not None:
                    text = text.strip()
                    if not text:
                        stats.empty += 1
                        text = None
                    else:
                        stats.lines += 1
                yield text
        except (OSError, EOFError) as err:  # e.g. a truncated or fake .gz file
            raise UserError(f"cannot read corpus file {file}: {err}") from None
        except UserError:
            raise
        except Exception as err:  # pyarrow / datasets errors on a damaged file
            raise UserError(f"cannot read corpus file {file}: {type(err).__name__}: {err}") from None


def _size(file: Path) -> int:
    return sum(p.stat().st_size for p in file.rglob("*") if p.is_file()) if file.is_dir() else file.stat().st_size


def missing_corpus(path: Path) -> UserError:
    """The one error for a ``--corpus`` path that is not there."""
    return UserError(f"corpus {path} does not exist: pass a text file, .jsonl, .parquet, a datasets folder, a folder "
                     "of them or a prepare-data folder to --corpus")


def no_usable_line(path: Path, stats: CorpusStats, text_field: str) -> UserError:
    return UserError(
        f"corpus {path} has no usable line ({stats.empty} empty, {stats.undecodable} not UTF-8, "
        f"{stats.not_text} without a '{text_field}' string): give a corpus with text, one example per line"
    )


def read_corpus(path: Path | str, text_field: str = "text", limit: int | None = None) -> Corpus:
    """The usable lines of a small corpus (at most ``limit``), in order; skipped lines are counted.

    For samples (evaluation text, vocabulary reports); distillation streams through prepared shards.
    """
    path = Path(path)
    stats = CorpusStats()
    lines: list[str] = []
    for text in iter_documents(path, text_field, stats):
        if text is not None:
            lines.append(text)
            if limit is not None and len(lines) >= limit:
                break
    if not lines:
        raise no_usable_line(path, stats, text_field)
    log.info("corpus %s: %d lines from %d files (skipped %d empty, %d undecodable, %d non-text)",
             path, stats.lines, stats.files, stats.empty, stats.undecodable, stats.not_text)
    return Corpus(path=path, lines=lines, stats=stats)


def sample_lines(paths: Sequence[Path | str], n: int, seed: int, text_field: str = "text") -> list[str]:
    """A uniform random sample of ``n`` usable lines over ``paths`` (reservoir sampling: one pass, memory
    of ``n`` lines), in a deterministic order for ``seed``."""
    rng = np.random.default_rng(seed)
    reservoir: list[str] = []
    seen = 0
    for path in paths:
        stats = CorpusStats()
        for text in iter_documents(path, text_field, stats):
            if text is None:
                continue
            seen += 1
            if len(reservoir) < n:
                reservoir.append(text)
            else:
                j = int(rng.integers(seen))
                if j < n:
                    reservoir[j] = text
        if not stats.lines and len(paths) == 1:
            raise no_usable_line(Path(path), stats, text_field)
    order = rng.permutation(len(reservoir))
    return [reservoir[i] for i in order]


def expand_pattern(path: str) -> list[Path]:
    """A path, or a glob pattern (``data/cc100/*.txt``) that names one corpus per match, sorted."""
    if any(ch in path for ch in "*?[") and not Path(path).exists():
        matches = sorted(Path(p) for p in glob.glob(path, recursive=True))
        if not matches:
            raise UserError(f"corpus pattern {path} matches no file: check the path")
        return matches
    return [Path(path)]


def mixture_probabilities(sizes: Sequence[int], weights: Sequence[float], alpha: float) -> np.ndarray:
    """p_i ∝ weight_i · (n_i / Σn)^alpha: temperature sampling over corpora (XLM-R's alpha = 0.3)."""
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    p = np.asarray(weights, dtype=np.float64) * (sizes_arr / sizes_arr.sum()) ** alpha
    return p / p.sum()


class MixedSampler:
    """Draws (corpus, row) indices from several corpora of ``sizes`` rows, with replacement, by the mixture
    probabilities; a pure function of (seed, step, micro-batch, rank), so a resumed run reads exactly
    what an uninterrupted one would have, and each data-parallel rank reads different rows."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], alpha: float, seed: int):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.probabilities = mixture_probabilities(sizes, weights, alpha)
        self.seed = seed

    def draw(self, size: int, step: int, micro: int = 0, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(corpus index ``[size]``, row index within that corpus ``[size]``) for this (step, micro, rank)."""
        rng = np.random.default_rng([self.seed, step, micro, rank])
        which = rng.choice(len(self.sizes), size=size, p=self.probabilities)
        # One draw per row, in order: the same rows as the in-memory sampler before prepared shards, so a
        # corpus without long lines gives the very same batches (and step times compare like for like).
        return which, np.array([rng.integers(n) for n in self.sizes[which].tolist()], dtype=np.int64)

    def lines(self, corpora: Sequence[Sequence[str]], size: int, step: int, micro: int = 0, rank: int = 0) -> list[str]:
        """The drawn rows of in-memory line lists (small corpora: QAT's held-in text)."""
        which, rows = self.draw(size, step, micro, rank)
        return [corpora[c][r] for c, r in zip(which.tolist(), rows.tolist())]
