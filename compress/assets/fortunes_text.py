"""Quotes and proverbs per language from Debian's ``fortunes*`` packages (``/usr/share/games/fortunes``), optional.

A fortune file holds entries separated by lines that contain only ``%``. Next to each file lie ``NAME.dat``
(strfile's index) and often ``NAME.u8`` (a link to, or an empty stand-in for, the UTF-8 file): both are skipped,
as is every ``off/`` folder (offensive fortunes). The layout, as the Debian packages install it:

* ``<root>/<code>/`` per language: ``de``, ``es``, ``it``, ``pl``, ``ru``, ``cs`` (``cz/`` and ``sk/`` hold links
  into ``cs/``; links are followed and each real file is read once);
* ``<root>/`` itself: English (``fortunes``, ``fortunes-min``), plus a few files from other packages listed in
  ``TOP_LEVEL_LANGUAGES`` (``brasil`` from fortunes-br, ``chinese``/``song100``/``tang300`` from fortunes-zh) and
  links into language folders (fortunes-it links its files there).

Not installed on every machine: callers treat a missing root as "no fortunes" (``fortunes_by_language``
returns ``{}``).
"""

from __future__ import annotations

import re
from pathlib import Path

from compress.errors import UserError
from compress.run_dir import atomic_directory, sha256_of

DEFAULT_ROOT = Path("/usr/share/games/fortunes")
INSTALL_HINT = ("apt-get install fortunes fortunes-de fortunes-es fortunes-it fortunes-pl fortunes-ru fortunes-cs "
                "fortunes-zh fortunes-br")

# Folder name → language code; folders not listed keep their name (they are already short codes).
FOLDER_LANGUAGES = {"cz": "cs", "br": "pt"}
# Files directly in the root that are not English.
TOP_LEVEL_LANGUAGES = {"brasil": "pt", "chinese": "zh", "song100": "zh", "tang300": "zh"}
# Pictures, not language.
ART_FILES = {"ascii-art", "asciiart", "banner"}
# Encodings tried after UTF-8 fails, per language (older files; the current packages are all UTF-8).
LEGACY_ENCODINGS = {"ru": "koi8-r", "pl": "iso-8859-2", "cs": "iso-8859-2", "sk": "iso-8859-2", "zh": "gb18030"}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def fortune_entries(text: str) -> list[str]:
    """The entries of one fortune file's text, each on one line: terminal colour codes and control characters
    removed, whitespace collapsed, empty entries dropped."""
    entries, current = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            entries.append(current)
            current = []
        else:
            current.append(line)
    entries.append(current)
    cleaned = (" ".join(_CONTROL.sub(" ", _ANSI.sub("", "\n".join(lines))).split()) for lines in entries)
    return [entry for entry in cleaned if entry]


def _read(path: Path, language: str) -> str | None:
    data = path.read_bytes()
    for encoding in ("utf-8", LEGACY_ENCODINGS.get(language, "latin-1")):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _is_fortune_file(path: Path) -> bool:
    return (path.is_file() and path.suffix not in (".dat", ".u8") and path.name not in ART_FILES
            and not path.name.startswith("."))


def fortune_files(root: Path = DEFAULT_ROOT) -> dict[str, list[Path]]:
    """Language code → fortune files (resolved, each real file once, sorted); ``{}`` when ``root`` is absent."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found: dict[Path, str] = {}  # resolved file → language; a language folder wins over a root-level link
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "off"):
        language = FOLDER_LANGUAGES.get(folder.name, folder.name)
        for path in sorted(folder.iterdir()):  # one level: nested folders (es/off/) are never read
            if _is_fortune_file(path):
                found.setdefault(path.resolve(), language)
    for path in sorted(root.iterdir()):
        if _is_fortune_file(path):
            found.setdefault(path.resolve(), TOP_LEVEL_LANGUAGES.get(path.name, "en"))
    # Links into an off/ folder are offensive fortunes too.
    by_language: dict[str, list[Path]] = {}
    for path, language in found.items():
        if "off" not in path.parts[len(root.resolve().parts):-1] and path.stat().st_size:
            by_language.setdefault(language, []).append(path)
    return {language: sorted(paths) for language, paths in sorted(by_language.items())}


def fortunes_by_language(root: Path = DEFAULT_ROOT, *, min_chars: int = 10, max_chars: int = 400,
                         min_letter_share: float = 0.5) -> dict[str, list[str]]:
    """Language code → entries (file order, first occurrence kept) between ``min_chars`` and ``max_chars`` long
    whose non-space characters are mostly letters (drops tables, code and leftover pictures)."""
    result: dict[str, list[str]] = {}
    for language, paths in fortune_files(root).items():
        entries: dict[str, None] = {}
        for path in paths:
            text = _read(path, language)
            for entry in fortune_entries(text) if text else []:
                chars = entry.replace(" ", "")
                if min_chars <= len(entry) <= max_chars and \
                        sum(c.isalpha() for c in chars) >= min_letter_share * len(chars):
                    entries.setdefault(entry)
        if entries:
            result[language] = list(entries)
    return result


def source_record(root: Path = DEFAULT_ROOT) -> dict | None:
    """What a build used from ``root``: the files per language with their sha256 (``None`` when absent)."""
    files = fortune_files(root)
    if not files:
        return None
    return {"path": str(root), "files": {language: [[str(p), sha256_of(p)] for p in paths]
                                         for language, paths in files.items()}}


def build_fortunes_corpus(out_dir: Path, root: Path = DEFAULT_ROOT) -> Path:
    """Unlabelled text for distillation: ``out_dir/<language>.txt``, one fortune per line (inner line
    breaks become spaces). Needs the Debian fortunes packages; a clear error names them when absent."""
    texts = fortunes_by_language(root)
    if not texts:
        raise UserError(f"no fortunes found under {root}: {INSTALL_HINT}")
    with atomic_directory(out_dir) as tmp:
        for language, entries in sorted(texts.items()):
            lines = (" ".join(entry.split()) for entry in entries)
            (tmp / f"{language}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out_dir
