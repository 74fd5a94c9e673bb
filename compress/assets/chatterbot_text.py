"""Real conversational text in ~20 languages from ``chatterbot-corpus``, one plain-text file per language."""

from __future__ import annotations

from pathlib import Path

import yaml

from compress.errors import UserError
from compress.run_dir import atomic_write_text


def chatterbot_data_dir() -> Path:
    try:
        import chatterbot_corpus
    except ImportError:
        raise UserError("multilingual text needs its package: pip install --no-deps chatterbot-corpus==1.3.3") from None
    return Path(chatterbot_corpus.__file__).parent / "data"


def _lines(yml: Path) -> list[str]:
    data = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
    out = []
    for conversation in data.get("conversations") or []:
        for turn in conversation if isinstance(conversation, list) else [conversation]:
            if isinstance(turn, str) and turn.strip():
                out.append(" ".join(turn.split()))
    return out


def build_chatterbot_corpus(out_dir: Path, languages: list[str] | None = None, data_dir: Path | None = None) -> dict[str, Path]:
    """Write ``out_dir/<language>.txt`` (deduplicated lines, file order) for each language; returns lang → path."""
    data_dir = data_dir or chatterbot_data_dir()
    available = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    chosen = languages or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise UserError(f"chatterbot-corpus has no language {', '.join(unknown)}: choose from {', '.join(available)}")
    written = {}
    for lang in chosen:
        seen: dict[str, None] = {}
        for yml in sorted((data_dir / lang).glob("*.yml")):
            seen.update(dict.fromkeys(_lines(yml)))
        if seen:
            path = Path(out_dir) / f"{lang}.txt"
            atomic_write_text(path, "\n".join(seen) + "\n")
            written[lang] = path
    return written
