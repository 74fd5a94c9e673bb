"""compress trim-vocab through the CLI: the trimmed folder, the held-out report, bad input."""

import json

from transformers import AutoModel

from reference.tiny_models import SAMPLE_BY_LANGUAGE, write_corpus
from tests.cli_runner import run_cli


def test_trim_vocab_command(tiny_xlmr_dir, tmp_path, capsys):
    english = write_corpus(tmp_path / "en.txt", SAMPLE_BY_LANGUAGE["en"])
    german = write_corpus(tmp_path / "de.txt", SAMPLE_BY_LANGUAGE["de"])
    out = tmp_path / "trimmed"
    result = run_cli(["trim-vocab", tiny_xlmr_dir, "--corpus", english, "--out", out, "--held-out", english,
                      "--held-out", german], capsys)
    assert result.code == 0, result.stderr
    report = json.loads((out / "trim_report.json").read_text())
    assert report["en"]["changed_token_share"] == 0.0  # the text it was trimmed to keeps its segmentation
    assert report["de"]["changed_token_share"] > 0.0  # other languages fall back to smaller pieces
    kept = json.loads((out / "trimmed_vocab.json").read_text())["kept_ids"]
    assert AutoModel.from_pretrained(out).config.vocab_size == len(kept) < AutoModel.from_pretrained(tiny_xlmr_dir).config.vocab_size
    assert "vocabulary" in result.stdout and "MiB" in result.stdout

    again = run_cli(["trim-vocab", tiny_xlmr_dir, "--corpus", english, "--out", out], capsys)
    assert again.code == 2 and "not empty" in again.stderr
    missing = run_cli(["trim-vocab", tmp_path / "nope", "--corpus", english, "--out", tmp_path / "t2"], capsys)
    assert missing.code == 2 and "does not exist" in missing.stderr
    no_corpus = run_cli(["trim-vocab", tiny_xlmr_dir, "--corpus", tmp_path / "none.txt", "--out", tmp_path / "t3"], capsys)
    assert no_corpus.code == 2 and "Traceback" not in no_corpus.stderr
