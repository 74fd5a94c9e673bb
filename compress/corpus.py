"""Unlabelled text: read corpora (text, folders, ``.jsonl``, gzip) and sample mixed batches.

A batch is a pure function of (seed, step, micro-batch, rank): resuming at step N reads exactly the
batches an uninterrupted run would have read, and each data-parallel rank reads different lines.
Sampling is with replacement, by the mixture probabilities of :func:`mixture_probabilities`.
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


@dataclass
class CorpusStats:
    """What reading one corpus kept and skipped."""

    files: int = 0
    lines: int = 0
    empty: int = 0
    undecodable: int = 0
    not_text: int = 0  # .jsonl records without a string in the text field, or malformed JSON


@dataclass
class Corpus:
    """The usable lines of one corpus, in file order."""

    path: Path
    lines: list[str]
    stats: CorpusStats = field(default_factory=CorpusStats)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _raw_lines(file: Path) -> Iterator[bytes]:
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rb") as f:
        yield from f


def _is_jsonl(file: Path) -> bool:
    suffixes = file.suffixes[-2:] if file.suffix == ".gz" else file.suffixes[-1:]
    return suffixes[0] in (".jsonl", ".ndjson") if suffixes else False


def read_corpus(path: Path | str, text_field: str = "text") -> Corpus:
    """All usable lines of a file or folder; empty, undecodable and non-text lines are skipped and counted."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"corpus {path} does not exist: pass a text file, a .jsonl file or a folder to --corpus")
    stats = CorpusStats()
    lines: list[str] = []
    for file in _files(path):
        stats.files += 1
        jsonl = _is_jsonl(file)
        try:
            for raw in _raw_lines(file):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    stats.undecodable += 1
                    continue
                if jsonl and text.strip():
                    try:
                        text = json.loads(text).get(text_field)
                    except (json.JSONDecodeError, AttributeError):
                        text = None
                    if not isinstance(text, str):
                        stats.not_text += 1
                        continue
                text = text.strip()
                if not text:
                    stats.empty += 1
                    continue
                lines.append(text)
        except (OSError, EOFError) as err:  # e.g. a truncated or fake .gz file
            raise UserError(f"cannot read corpus file {file}: {err}") from None
    stats.lines = len(lines)
    if stats.files == 0:
        raise UserError(f"corpus folder {path} holds no files: point --corpus at text files")
    if not lines:
        raise UserError(
            f"corpus {path} has no usable line ({stats.empty} empty, {stats.undecodable} not UTF-8, "
            f"{stats.not_text} without a '{text_field}' string): give a corpus with text, one example per line"
        )
    log.info("corpus %s: %d lines from %d files (skipped %d empty, %d undecodable, %d non-text)",
             path, stats.lines, stats.files, stats.empty, stats.undecodable, stats.not_text)
    return Corpus(path=path, lines=lines, stats=stats)


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
    """Draws batches of lines from several corpora, deterministically per (seed, step, micro, rank)."""

    def __init__(self, corpora: Sequence[Corpus], weights: Sequence[float], alpha: float, seed: int):
        self.corpora = list(corpora)
        self.probabilities = mixture_probabilities([len(c.lines) for c in corpora], weights, alpha)
        self.seed = seed

    def batch(self, size: int, step: int, micro: int = 0, rank: int = 0) -> list[str]:
        """``size`` lines for this (step, micro-batch, rank)."""
        rng = np.random.default_rng([self.seed, step, micro, rank])
        which = rng.choice(len(self.corpora), size=size, p=self.probabilities)
        return [self.corpora[c].lines[rng.integers(len(self.corpora[c].lines))] for c in which]
