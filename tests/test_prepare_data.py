"""Preparing corpora into token shards: every input format, windows, resume, damage, changes, memory."""

import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from compress.errors import UserError
from compress.prepare_data import PrepareSettings, prepare_corpus, source_fingerprint, tokenizer_spec
from compress.token_shards import CORPUS_JSON, TokenCorpus
from reference.tiny_models import SAMPLE_TEXT, write_corpus
from tests.cli_runner import cli_command, cli_env, run_cli

LONG = " ".join(SAMPLE_TEXT)  # hundreds of tokens: several windows at max length 32
SMALL = ["--layers", "2", "--hidden", "32", "--heads", "2", "--batch-size", "8", "--max-length", "32",
         "--relation-heads", "8"]


def _mixed_inputs(root: Path) -> tuple[list[Path], list[str]]:
    """One corpus of each format, and the texts they hold in order (what a reader must keep)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [*SAMPLE_TEXT[:6], LONG]
    root.mkdir()
    text = write_corpus(root / "plain.txt", ["", texts[0], "  ", texts[1]])
    folder = root / "folder"
    folder.mkdir()
    write_corpus(folder / "a.txt", [texts[2]])
    with gzip.open(folder / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write(texts[3] + "\n")
    jsonl = root / "records.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as f:
        for record in ({"text": texts[4]}, {"other": 1}, {"text": texts[5]}):
            f.write(json.dumps(record) + "\n")
    parquet = root / "table.parquet"
    pq.write_table(pa.table({"text": [texts[6], None], "id": [1, 2]}), parquet)
    dataset = root / "dataset"
    datasets.Dataset.from_dict({"text": [texts[0], texts[6]]}).save_to_disk(str(dataset))
    expected = [texts[0], texts[1], texts[2], texts[3], texts[4], texts[5], texts[6], texts[0], texts[6]]
    return [text, folder, jsonl, parquet, dataset], expected


def _sequences(folder: Path) -> list[list[int]]:
    corpus = TokenCorpus(folder)
    return [corpus[i].tolist() for i in range(len(corpus))]


@pytest.mark.parametrize("family", ["bert", "xlmr"])
def test_every_format_gives_the_tokenizers_sequences_with_windows(family, request, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(f"tiny_{family}_dir_shared"))
    spec = tokenizer_spec(tokenizer)
    sources, texts = _mixed_inputs(tmp_path / "in")
    got = []
    for i, source in enumerate(sources):
        got += _sequences(prepare_corpus(source, tmp_path / f"out{i}", spec, PrepareSettings(max_length=32, max_bad_share=1)))

    expected = []
    room = 32 - len(spec.prefix) - len(spec.suffix)
    for text in texts:
        content = tokenizer(text, add_special_tokens=False)["input_ids"]
        windows = [content[i : i + room] for i in range(0, len(content), room)]
        expected += [list(spec.prefix) + w + list(spec.suffix) for w in windows]
        if len(windows) == 1:  # a line that fits is exactly what the tokenizer itself gives
            assert expected[-1] == tokenizer(text)["input_ids"]
        else:  # the first window of a long line is the tokenizer's own truncation; no token is lost
            assert expected[-len(windows)] == tokenizer(text, truncation=True, max_length=32)["input_ids"]
    assert got == expected
    assert max(map(len, got)) == 32 and len(got) > len(texts)

    stats = TokenCorpus(tmp_path / "out0").meta["stats"]
    assert (stats["documents"], stats["kept_documents"], stats["empty"]) == (4, 2, 2)
    stats = TokenCorpus(tmp_path / "out2").meta["stats"]
    assert (stats["documents"], stats["not_text"]) == (3, 1)
    stats = TokenCorpus(tmp_path / "out3").meta["stats"]
    assert stats["not_text"] == 1 and stats["windowed_documents"] == 1


def test_truncate_keeps_the_first_window_and_counts_what_it_cut(tiny_bert_dir_shared, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir_shared)
    corpus = write_corpus(tmp_path / "c.txt", [SAMPLE_TEXT[0], LONG])
    folder = prepare_corpus(corpus, tmp_path / "out", tokenizer_spec(tokenizer),
                            PrepareSettings(max_length=32, long_lines="truncate"))
    assert _sequences(folder) == [tokenizer(t, truncation=True, max_length=32)["input_ids"] for t in (SAMPLE_TEXT[0], LONG)]
    stats = TokenCorpus(folder).meta["stats"]
    assert stats["truncated_tokens"] == len(tokenizer(LONG, add_special_tokens=False)["input_ids"]) - 30


def test_worker_processes_give_the_same_shards_as_one_process(tiny_xlmr_dir_shared, tmp_path, monkeypatch):
    import compress.prepare_data as prepare

    monkeypatch.setattr(prepare, "INLINE_BYTES", 0)  # use the worker pool even for this small input
    monkeypatch.setattr(prepare, "CHUNK_CHARS", 2000)  # many chunks in flight
    spec = tokenizer_spec(AutoTokenizer.from_pretrained(tiny_xlmr_dir_shared))
    corpus = write_corpus(tmp_path / "c.txt", SAMPLE_TEXT * 40)
    one = prepare_corpus(corpus, tmp_path / "one", spec, PrepareSettings(max_length=32), workers=1, shard_tokens=5000)
    two = prepare_corpus(corpus, tmp_path / "two", spec, PrepareSettings(max_length=32), workers=2, shard_tokens=5000)
    a, b = TokenCorpus(one), TokenCorpus(two)
    assert len(a.shards) > 2 and [s["sha256"] for s in a.shards] == [s["sha256"] for s in b.shards]
    a.verify()


_PREPARE_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from transformers import AutoTokenizer
from compress.prepare_data import PrepareSettings, prepare_corpus, tokenizer_spec
spec = tokenizer_spec(AutoTokenizer.from_pretrained(sys.argv[1]))
prepare_corpus(Path(sys.argv[2]), Path(sys.argv[3]), spec, PrepareSettings(max_length=32), shard_tokens=20000)
"""


def test_an_interrupted_preparation_resumes_and_ends_as_an_uninterrupted_one(tiny_bert_dir_shared, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", SAMPLE_TEXT * 3000)
    target = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _PREPARE_SCRIPT, str(tiny_bert_dir_shared), str(corpus), str(target)],
                            env=cli_env(), stderr=subprocess.PIPE, text=True)
    progress = tmp_path / ".killed.partial" / "progress.json"
    deadline = time.monotonic() + 120
    while not progress.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (target / CORPUS_JSON).exists()  # nothing that looks complete

    again = subprocess.run([sys.executable, "-c", _PREPARE_SCRIPT, str(tiny_bert_dir_shared), str(corpus), str(target)],
                           env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming after" in again.stderr
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-c", _PREPARE_SCRIPT, str(tiny_bert_dir_shared), str(corpus), str(reference)],
                   env=cli_env(), check=True, capture_output=True, timeout=300)
    a, b = TokenCorpus(target), TokenCorpus(reference)
    assert [s["sha256"] for s in a.shards] == [s["sha256"] for s in b.shards] and len(a.shards) > 3
    assert a.meta["stats"] == b.meta["stats"]
    assert not (tmp_path / ".killed.partial").exists()


def test_ctrl_c_keeps_the_finished_shards_and_says_how_to_resume(tiny_bert_dir_shared, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", SAMPLE_TEXT * 3000)
    out = tmp_path / "prepared"
    args = ["prepare-data", "--tokenizer", tiny_bert_dir_shared, "--corpus", corpus, "--out", out, "--max-length", "32"]
    proc = subprocess.Popen(cli_command(args), env=cli_env(), stderr=subprocess.PIPE, text=True)
    partial = out / ".c.partial"
    deadline = time.monotonic() + 120
    writing = partial / ".shard-00000.bin.tmp"
    while not (writing.exists() and writing.stat().st_size):  # under way
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert not (out / "c").exists() and not json.loads((out / "prepared.json").read_text())["complete"]
    again = subprocess.run(cli_command(args), env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "prepared.json").read_text())["complete"] and TokenCorpus(out / "c").meta["complete"]


def test_prepare_data_cli_then_distill_from_the_folder_equals_distilling_the_raw_text(tiny_bert_dir, corpus_file, tmp_path,
                                                                                     capsys, caplog):
    out = tmp_path / "prepared"
    result = run_cli(["prepare-data", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--out", out,
                      "--max-length", "32", "--verify"], capsys)
    assert result.code == 0, result.stderr
    assert "sequences" in result.stdout and (out / "prepared.json").exists() and (out / "corpus" / CORPUS_JSON).exists()

    common = ["--teacher", tiny_bert_dir, *SMALL, "--steps", "6", "train.grad_accum=2"]
    raw, prepared = tmp_path / "raw", tmp_path / "from-prepared"
    assert run_cli(["distill", "--corpus", corpus_file, "--run-dir", raw, *common], capsys).code == 0
    assert run_cli(["distill", "--corpus", out, "--run-dir", prepared, *common], capsys).code == 0
    a, b = load_file(raw / "student" / "model.safetensors"), load_file(prepared / "student" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((prepared / "manifest.json").read_text())["stages"]["distill"]["inputs"]["corpora"][0]
    assert record["prepared"] == str(out / "corpus") and record["sequences"] > 0 and len(record["fingerprint"]["sha256"]) == 64

    # The raw corpus was prepared into the cache once; a second run reuses it.
    caplog.clear()
    again = run_cli(["distill", "--corpus", corpus_file, "--run-dir", tmp_path / "again", *common], capsys)
    assert again.code == 0 and "already prepared" in caplog.text


def test_damaged_shards_and_changed_corpora(tiny_bert_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert run_cli(["prepare-data", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--out", out,
                    "--max-length", "32"], capsys).code == 0
    shard = out / "corpus" / "shard-00000"
    common = ["--teacher", tiny_bert_dir, *SMALL, "--steps", "2"]

    def distill(corpus, name):
        return run_cli(["distill", "--corpus", corpus, "--run-dir", tmp_path / name, *common], capsys)

    # Another max length than the shards were made for.
    result = run_cli(["distill", "--corpus", out, "--run-dir", tmp_path / "len", *common, "--max-length", "16"], capsys)
    assert result.code == 2 and "prepared for max length 32" in result.stderr

    # An index whose offsets are garbage: refused when read, in one line.
    good_idx = shard.with_suffix(".idx").read_bytes()
    offsets = np.frombuffer(good_idx, dtype=np.int64).copy()
    offsets[1:] = offsets[-1] + 1000
    shard.with_suffix(".idx").write_bytes(offsets.tobytes())
    result = distill(out, "corrupt")
    assert result.code == 2 and "is corrupt" in result.stderr and "Traceback" not in result.stderr
    shard.with_suffix(".idx").write_bytes(good_idx)
    with pytest.raises(UserError, match="does not match its checksum"):
        bad = bytearray(good_idx)
        bad[9] ^= 1
        shard.with_suffix(".idx").write_bytes(bytes(bad))
        TokenCorpus(out / "corpus").verify()
    shard.with_suffix(".idx").write_bytes(good_idx)

    # A truncated token file: refused at start.
    data = shard.with_suffix(".bin").read_bytes()
    shard.with_suffix(".bin").write_bytes(data[:-7])
    result = distill(out, "truncated")
    assert result.code == 2 and "truncated or corrupt" in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 20 and not (tmp_path / "truncated" / "student").exists()
    shard.with_suffix(".bin").write_bytes(data)

    # The text changed after preparation: the prepared folder is refused, the raw corpus is prepared anew.
    before = source_fingerprint(corpus_file)
    with open(corpus_file, "a", encoding="utf-8") as f:
        f.write("one more line about the weather\n")
    assert source_fingerprint(corpus_file)["sha256"] != before["sha256"]
    result = distill(out, "changed")
    assert result.code == 2 and "has changed since it was prepared" in result.stderr
    result = distill(corpus_file, "raw-changed")
    assert result.code == 0, result.stderr
    stage = json.loads((tmp_path / "raw-changed" / "manifest.json").read_text())["stages"]["distill"]
    assert stage["inputs"]["corpora"][0]["kept_documents"] == len(corpus_file.read_text().splitlines())


def test_a_binary_corpus_is_refused_with_its_counts(tiny_bert_dir, tmp_path, capsys):
    binary = tmp_path / "program.bin"
    rng = np.random.default_rng(0)
    # As in an executable: some lines decode (strings, symbol names), most do not.
    lines = [b"GLIBC_2.34 main libc.so.6" if i % 3 == 0 else rng.integers(128, 256, size=40, dtype=np.uint8).tobytes()
             for i in range(300)]
    binary.write_bytes(b"\n".join(lines))
    result = run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", binary, "--run-dir", tmp_path / "run",
                      *SMALL, "--steps", "2"], capsys)
    assert result.code == 2 and "records are not text" in result.stderr and "max_bad_share" in result.stderr
    assert not (tmp_path / "run" / "student").exists()


_MEASURED = """
import resource, sys
from compress.cli import main
sys.argv = ["compress", *sys.argv[1:]]
try:
    main()
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _peak_rss_mb(args: list) -> float:
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *map(str, args)], env=cli_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024


def test_memory_does_not_grow_with_the_corpus(tiny_bert_dir, tmp_path):
    """A corpus of 48 MB (as Python strings several times that) against one of 0.1 MB: preparing it and
    distilling from it must not take more memory than the corpus holds."""
    small = write_corpus(tmp_path / "small.txt", SAMPLE_TEXT * 20)
    big = tmp_path / "big.txt"
    block = "".join(f"{i} {line}\n" for i, line in enumerate(SAMPLE_TEXT * 200)).encode()
    with open(big, "wb") as f:
        while f.tell() < 48 << 20:
            f.write(block)
    size_mb = big.stat().st_size / 2**20
    prepare = ["prepare-data", "--teacher", tiny_bert_dir, "--max-length", "32", "--workers", "2"]
    peak_small = _peak_rss_mb([*prepare, "--corpus", small, "--out", tmp_path / "p-small"])
    peak_big = _peak_rss_mb([*prepare, "--corpus", big, "--out", tmp_path / "p-big"])
    assert peak_big - peak_small < size_mb / 2, (peak_small, peak_big, size_mb)

    common = ["--teacher", tiny_bert_dir, *SMALL, "--steps", "20"]
    d_small = _peak_rss_mb(["distill", "--corpus", tmp_path / "p-small", "--run-dir", tmp_path / "r-small", *common])
    d_big = _peak_rss_mb(["distill", "--corpus", tmp_path / "p-big", "--run-dir", tmp_path / "r-big", *common])
    assert d_big - d_small < size_mb / 4, (d_small, d_big, size_mb)


@pytest.mark.parametrize("args, message", [
    (["--corpus", "CORPUS"], "exactly one of --teacher or --tokenizer"),
    (["--teacher", "TEACHER", "--corpus", "MISSING"], "does not exist"),
    (["--teacher", "TEACHER", "--corpus", "CORPUS", "--workers", "0"], "--workers must be at least 1"),
    (["--teacher", "TEACHER", "--corpus", "CORPUS", "--max-length", "2"], "leaves no room beside the 2 special tokens"),
    (["--teacher", "/no/such/folder", "--corpus", "CORPUS"], "is not a folder"),
])
def test_prepare_data_bad_input_is_one_line_and_writes_nothing(args, message, tiny_bert_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "prepared"
    names = {"CORPUS": str(corpus_file), "MISSING": str(tmp_path / "missing.txt"), "TEACHER": str(tiny_bert_dir)}
    result = run_cli(["prepare-data", *[names.get(a, a) for a in args], "--out", out], capsys)
    assert result.code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()
    out.write_text("a file")
    result = run_cli(["prepare-data", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--out", out], capsys)
    assert result.code == 2 and "is a file" in result.stderr
