"""Reading corpora in every supported format, counting what was skipped, and mixing them."""

import gzip
import json

import numpy as np
import pytest

from compress.corpus import MixedSampler, expand_pattern, mixture_probabilities, read_corpus
from compress.errors import UserError


def test_plain_text_skips_and_counts_empty_and_undecodable(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello world\n\n   \ncaf\xc3\xa9 ok\nbad \xff\xfe bytes\nlast line")
    corpus = read_corpus(f)
    assert corpus.lines == ["hello world", "café ok", "last line"]
    assert (corpus.stats.empty, corpus.stats.undecodable, corpus.stats.lines) == (2, 1, 3)


def test_jsonl_gzip_and_folders(tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_text("first\nsecond\n", encoding="utf-8")
    records = [{"text": "json one"}, {"body": "no text field"}, {"text": 5}, {"text": "json two"}]
    (folder / "sub" / "two.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    with gzip.open(folder / "sub" / "three.txt.gz", "wt", encoding="utf-8") as g:
        g.write("zipped line\n")
    with gzip.open(folder / "four.jsonl.gz", "wt", encoding="utf-8") as g:
        g.write(json.dumps({"content": "custom field"}) + "\n")
    corpus = read_corpus(folder)
    assert sorted(corpus.lines) == sorted(["first", "second", "json one", "json two", "zipped line"])
    assert corpus.stats.files == 4 and corpus.stats.not_text == 4
    assert read_corpus(folder / "four.jsonl.gz", text_field="content").lines == ["custom field"]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.txt", "does not exist"),
    (lambda d: (d / "empty.txt").write_text("\n\n") and d / "empty.txt", "no usable line"),
    (lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", "holds no files"),
    (lambda d: (d / "fake.gz").write_bytes(b"not gzip") and d / "fake.gz", "cannot read"),
])
def test_bad_corpora_give_clear_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        read_corpus(make(tmp_path))


def test_mixture_probabilities_temperature():
    sizes, weights = [900, 100], [1.0, 1.0]
    np.testing.assert_allclose(mixture_probabilities(sizes, weights, 1.0), [0.9, 0.1])
    np.testing.assert_allclose(mixture_probabilities(sizes, weights, 0.0), [0.5, 0.5])
    p = mixture_probabilities(sizes, weights, 0.3)
    assert 0.1 < p[1] < 0.5  # up-sampled, not uniform
    np.testing.assert_allclose(mixture_probabilities(sizes, [1.0, 9.0], 1.0), [0.5, 0.5])


def test_batches_are_a_function_of_step_and_rank(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(f"a{i}" for i in range(100)))
    (tmp_path / "b.txt").write_text("\n".join(f"b{i}" for i in range(100)))
    corpora = [read_corpus(tmp_path / "a.txt").lines, read_corpus(tmp_path / "b.txt").lines]
    sampler = MixedSampler([len(c) for c in corpora], [1.0, 1.0], 1.0, seed=7)
    again = MixedSampler([len(c) for c in corpora], [1.0, 1.0], 1.0, seed=7)
    assert sampler.lines(corpora, 16, step=3) == again.lines(corpora, 16, step=3)
    assert sampler.lines(corpora, 16, step=3, rank=0) != sampler.lines(corpora, 16, step=3, rank=1)
    assert sampler.lines(corpora, 16, step=3) != sampler.lines(corpora, 16, step=4)
    assert sampler.lines(corpora, 16, step=3, micro=1) != sampler.lines(corpora, 16, step=3, micro=0)
    drawn = [line[0] for step in range(50) for line in sampler.lines(corpora, 16, step)]
    assert 0.4 < drawn.count("a") / len(drawn) < 0.6
    which, rows = sampler.draw(1000, step=0)
    assert rows[which == 0].max() < 100 and rows.min() >= 0


def test_glob_pattern_names_one_corpus_per_match(tmp_path):
    for lang in ("de", "en", "es"):
        (tmp_path / f"{lang}.txt").write_text(f"{lang} line\n")
    assert [p.name for p in expand_pattern(str(tmp_path / "*.txt"))] == ["de.txt", "en.txt", "es.txt"]
    assert expand_pattern(str(tmp_path / "en.txt")) == [tmp_path / "en.txt"]
    with pytest.raises(UserError, match="matches no file"):
        expand_pattern(str(tmp_path / "*.jsonl"))
