"""Evaluation tasks: a small YAML file per task (``configs/tasks/``) naming its data and what it measures.

Kinds:
- ``classification``: rows with a text (and optionally a second text) and a label; scored by accuracy
  and macro-F1, per language when rows carry one. A model with a classification head is scored by its
  own predictions; an encoder without one by a linear probe fitted on the train split.
- ``bitext``: rows of translation pairs (``source``, ``target``, ``language``); top-1 retrieval accuracy
  both ways per language, from mean-pooled embeddings.
- ``fidelity``: held-out text and no labels; how closely a model keeps a reference model's sentence
  geometry (and, in PyTorch, its self-attention relations).

Data files: ``.jsonl``, ``.csv``, ``.tsv``, or a folder written by ``datasets``' ``save_to_disk``
(a DatasetDict's split is chosen by the split's name). Paths may start with ``{cache}`` (the offline
asset cache) or be relative to the YAML file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from compress.assets.cache import cache_dir
from compress.config import describe
from compress.errors import UserError

TASKS_DIR = Path(__file__).resolve().parents[1] / "configs" / "tasks"
HEADLINE = {"classification": "accuracy", "bitext": "accuracy", "fidelity": "similarity_correlation"}


class FinetuneDefaults(BaseModel):
    """The task's fine-tuning recipe (``compress finetune`` flags override it)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    max_train_examples: int | None = None


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["classification", "bitext", "fidelity"]
    description: str = ""
    data: dict[str, str]
    build_hint: str = ""
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    language_field: str | None = "language"
    source_field: str = "source"
    target_field: str = "target"
    prefix: str = ""
    max_length: int = 128
    max_examples: int | None = None
    probe_train_examples: int = 4000
    finetune: FinetuneDefaults = FinetuneDefaults()
    source_file: str = ""

    @property
    def headline(self) -> str:
        return HEADLINE[self.kind]

    def split_path(self, split: str) -> Path:
        """The resolved path of ``split``; a clear error when the task has no such split."""
        if split not in self.data:
            raise UserError(f"task '{self.name}' has no '{split}' split (it has {', '.join(self.data)}): "
                            f"add data.{split} to {self.source_file or 'its YAML'}")
        raw = self.data[split].replace("{cache}", str(cache_dir()))
        path = Path(raw).expanduser()
        if not path.is_absolute() and self.source_file:
            path = Path(self.source_file).parent / path
        return path

    def rows(self, split: str) -> list[dict[str, Any]]:
        """The split's rows; with ``max_examples``, that many, stratified by language where the rows
        have one (:func:`stratified_subsample`), else spread evenly over the file."""
        path = self.split_path(split)
        if not path.exists():
            hint = f": {self.build_hint}" if self.build_hint else ": check data in the task's YAML"
            raise UserError(f"data for task '{self.name}' split '{split}' not found at {path}{hint}")
        rows = read_rows(path, split)
        if not rows:
            raise UserError(f"{path} holds no rows: task '{self.name}' needs data in its '{split}' split")
        required = self._required_fields()
        missing = [f for f in required if f not in rows[0]]
        if missing:
            raise UserError(f"{path} rows lack field(s) {', '.join(missing)} (they have {', '.join(rows[0])}): "
                            f"set the *_field keys in {self.source_file or 'the task YAML'}")
        if self.max_examples and len(rows) > self.max_examples:
            rows = stratified_subsample(rows, self.max_examples, self.languages(rows))
        return rows

    def _required_fields(self) -> list[str]:
        if self.kind == "classification":
            return [self.text_field, self.label_field] + ([self.text_pair_field] if self.text_pair_field else [])
        if self.kind == "bitext":
            return [self.source_field, self.target_field]
        return [self.text_field]

    def texts(self, rows: list[dict[str, Any]], field: str | None = None) -> list[str]:
        """The rows' texts with the task's prefix (e.g. e5's ``query: ``)."""
        return [self.prefix + str(row[field or self.text_field]) for row in rows]

    def languages(self, rows: list[dict[str, Any]]) -> list[str] | None:
        if not self.language_field or not rows or self.language_field not in rows[0]:
            return None
        return [str(row[self.language_field]) for row in rows]


def _evenly(indices: list[int], n: int) -> list[int]:
    step = len(indices) / n
    return [indices[int(i * step)] for i in range(n)]


def stratified_subsample(rows: list[dict[str, Any]], n: int, languages: list[str] | None) -> list[dict[str, Any]]:
    """``n`` of ``rows``, deterministic, in file order: every language keeps a share proportional to its rows
    (at least one each while ``n`` allows; largest remainders get the rest), spread evenly within it.
    Without languages, ``n`` rows spread evenly over the file. (Evenly spaced rows alone would keep only
    some languages of a file written round-robin over languages.)"""
    if not languages:
        return [rows[i] for i in _evenly(list(range(len(rows))), n)]
    groups: dict[str, list[int]] = {}
    for i, language in enumerate(languages):
        groups.setdefault(language, []).append(i)
    quota = {lang: min(1, len(idx)) if n >= len(groups) else 0 for lang, idx in groups.items()}
    rest = n - sum(quota.values())
    shares = {lang: rest * len(idx) / len(rows) for lang, idx in groups.items()}
    for lang in groups:
        quota[lang] += int(shares[lang])
    order = sorted(groups, key=lambda lang: -(shares[lang] - int(shares[lang])))
    for lang in order[: n - sum(quota.values())]:
        quota[lang] += 1
    chosen = sorted(i for lang, idx in groups.items() for i in _evenly(idx, min(quota[lang], len(idx))))
    return [rows[i] for i in chosen]


def read_rows(path: Path, split: str = "test") -> list[dict[str, Any]]:
    """Rows of a ``.jsonl``/``.csv``/``.tsv`` file, a plain text file (one ``text`` per line), or a
    ``save_to_disk`` dataset folder."""
    if path.is_dir():
        return _dataset_rows(path, split)
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8", newline="") as f:
        if suffix == ".jsonl":
            try:
                return [json.loads(line) for line in f if line.strip()]
            except json.JSONDecodeError as err:
                raise UserError(f"{path} is not valid JSON lines ({err.msg} at line {err.lineno}): fix the file") from None
        if suffix in (".csv", ".tsv"):
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".txt":
            return [{"text": line.strip()} for line in f if line.strip()]
    raise UserError(f"cannot read {path}: task data must be .jsonl, .csv, .tsv, .txt or a `save_to_disk` dataset folder")


def _dataset_rows(path: Path, split: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"{path} is a folder: reading a Hugging Face dataset needs `pip install datasets`") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:
        raise UserError(f"{path} is not a dataset saved with `save_to_disk` ({str(err).splitlines()[0]})") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = {"dev": ["dev", "validation", "valid"], "test": ["test"], "train": ["train"]}.get(split, [split])
        found = [n for n in names if n in loaded]
        if not found:
            raise UserError(f"dataset {path} has no '{split}' split (it has {', '.join(loaded)})")
        loaded = loaded[found[0]]
    return [dict(row) for row in loaded]


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_task(name_or_path: str) -> TaskSpec:
    """A task by name (``configs/tasks/NAME.yaml``) or by the path of a YAML file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = TASKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"unknown task '{name_or_path}': choose from {', '.join(available_tasks())} or pass a task YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise UserError(f"task file {path} is not valid YAML: fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"task file {path} must hold a mapping of keys")
    data.setdefault("name", path.stem)
    try:
        return TaskSpec.model_validate({**data, "source_file": str(path)})
    except ValidationError as err:
        raise UserError(f"invalid task file {path}: {describe(err)}") from None
