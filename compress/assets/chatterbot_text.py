"""Real conversational text in 28 languages from ``chatterbot-corpus``: one plain-text file per language."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from compress.errors import UserError
from compress.run_dir import atomic_write_text

INSTALL_HINT = "pip install --no-deps chatterbot-corpus==1.3.3"


def chatterbot_data_dir() -> Path:
    """``chatterbot_corpus/data`` of the installed package (one folder per language)."""
    try:
        import chatterbot_corpus
    except ImportError:
        raise UserError(f"multilingual text needs its package: {INSTALL_HINT}") from None
    return Path(chatterbot_corpus.__file__).parent / "data"


def conversation_lines(yml: Path) -> list[str]:
    """Every turn of every conversation in one topic file, whitespace collapsed (newlines become spaces).

    ``BaseLoader`` keeps every scalar as written: a turn "yes" or "42" stays text, not a bool or an int.
    """
    data = yaml.load(yml.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}
    lines = []
    for conversation in data.get("conversations") or []:
        for turn in conversation if isinstance(conversation, list) else [conversation]:
            text = " ".join(turn.split()) if isinstance(turn, str) else ""
            if text:
                lines.append(text)
    return lines


def build_chatterbot_corpus(out_dir: Path, languages: list[str] | None = None, *,
                            data_dir: Path | None = None) -> dict[str, Path]:
    """Write ``out_dir/<language>.txt`` and ``out_dir/all.jsonl``; returns language → text file.

    Languages are the package's folder names ("english", "german", ...), all of them by default. A language's
    lines come in topic-file order (sorted names), then file order, first occurrence kept. ``all.jsonl`` holds
    ``{"text", "lang"}`` for the same lines, languages in the order given (sorted by default).
    """
    data_dir = Path(data_dir or chatterbot_data_dir())
    available = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    chosen = list(languages or available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise UserError(f"chatterbot-corpus has no language {', '.join(unknown)}: choose from {', '.join(available)}")
    written, records = {}, []
    for lang in chosen:
        lines: dict[str, None] = {}  # ordered set
        for yml in sorted((data_dir / lang).glob("*.yml")):
            lines.update(dict.fromkeys(conversation_lines(yml)))
        if lines:
            written[lang] = _publish(Path(out_dir) / f"{lang}.txt", "".join(f"{line}\n" for line in lines))
            records += [json.dumps({"text": line, "lang": lang}, ensure_ascii=False) + "\n" for line in lines]
    _publish(Path(out_dir) / "all.jsonl", "".join(records))
    return written


def _publish(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    path.chmod(0o644)  # the atomic write's temporary file is owner-only
    return path
