"""Evaluation: metrics on hand-made cases, task files in every format, and the same scores from PyTorch
and ONNX Runtime for an exported model."""

import csv
import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from bench.encoders import MemoizedEncoder, OrtEncoder
from bench.evaluate import bitext_scores, classification_scores, evaluate, fidelity_scores
from bench.metrics import (
    accuracy, bitext_accuracy, by_group, macro_f1, retrieval_top1, row_cosines, similarity_correlation,
)
from bench.probe import fit_probe
from compress.pooling import mean_pool
from bench.tasks import available_tasks, load_task, read_rows
from bench.tokenization import encode_batch, load_tokenizer
from bench.torch_encoder import TorchEncoder
from compress.errors import UserError
from export.onnx_export import export_fp32
from reference.tiny_models import SAMPLE_BY_LANGUAGE


# --- metrics ---------------------------------------------------------------------------------------

def test_accuracy_and_macro_f1_by_hand():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    assert accuracy(pred, gold) == pytest.approx(0.6)
    # F1: a = 2·1/(2·1+1+1) = 0.5, b = 2·2/(2·2+1+0) = 0.8, c = 0 (no true positive)
    assert macro_f1(pred, gold) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert by_group(accuracy, pred, gold, ["x", "x", "y", "y", "y"]) == {"x": 0.5, "y": pytest.approx(2 / 3)}


def test_retrieval_by_hand():
    src = np.eye(4)
    assert retrieval_top1(src, src) == 1.0
    # Targets 2 and 3 swapped: two of four queries find their own row.
    tgt = src[[0, 1, 3, 2]]
    assert retrieval_top1(src, tgt) == 0.5
    # A hub: target 0 is the nearest target of both sources, yet each target's nearest source is its own.
    source = np.array([[1.0, 0.0], [0.0, 1.0]])
    target = np.array([[1.0, 0.95], [-1.0, 0.9]])
    assert bitext_accuracy(source, target) == {"src2tgt": 0.5, "tgt2src": 1.0, "mean": 0.75}


def test_similarity_correlation_is_invariant_to_rotation_and_width():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 16))
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    wider = np.concatenate([a @ rotation, np.zeros((50, 8))], axis=1)  # an isometry into 24 dimensions
    assert similarity_correlation(a, wider) == pytest.approx(1.0)
    assert abs(similarity_correlation(a, rng.normal(size=(50, 16)))) < 0.2
    assert row_cosines(a, a) == pytest.approx(np.ones(50))
    with pytest.raises(ValueError):
        row_cosines(a, wider)


def test_mean_pool_ignores_padding():
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0], [0.0, 0.0]]  # a row with no token → zeros
    assert mean_pool(hidden.astype(np.float16), mask).dtype == np.float32
    assert mean_pool(hidden, mask).dtype == np.float64


def test_mean_pool_is_the_same_on_torch_tensors():
    import torch

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], requires_grad=True)
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert pooled.tolist() == [[2.0, 3.0]]
    pooled.sum().backward()
    assert hidden.grad[0, :, 0].tolist() == [0.5, 0.5, 0.0]
    assert mean_pool(hidden.detach().bfloat16(), torch.tensor([[1, 1, 0]])).dtype == torch.float32


def test_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    centres = {"red": np.full(8, 3.0), "green": np.full(8, -3.0), "blue": np.r_[np.full(4, 3.0), np.full(4, -3.0)]}
    labels = [c for c in centres for _ in range(40)]
    features = np.stack([centres[c] + rng.normal(size=8) for c in labels])
    probe = fit_probe(features, labels)
    test_labels = list(centres) * 10
    test = np.stack([centres[c] + rng.normal(size=8) for c in test_labels])
    assert accuracy(probe.predict(test), test_labels) == 1.0


# --- task files --------------------------------------------------------------------------------------

ROWS = [{"text": f"sentence {i}", "label": "yes" if i % 2 else "no", "language": "en" if i < 6 else "de"}
        for i in range(10)]


def _write(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_rows_from_every_file_format(tmp_path, fmt):
    _write(tmp_path / f"d.{fmt}", ROWS, fmt)
    assert [dict(r) for r in read_rows(tmp_path / f"d.{fmt}")] == [{k: str(v) if fmt != "jsonl" else v for k, v in r.items()} for r in ROWS]


def test_rows_from_a_saved_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:6]),
                          "validation": datasets.Dataset.from_list(ROWS[6:])}).save_to_disk(str(tmp_path / "ds"))
    assert read_rows(tmp_path / "ds", "dev") == ROWS[6:]
    with pytest.raises(UserError, match="no 'test' split"):
        read_rows(tmp_path / "ds", "test")


def test_task_file_paths_limits_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("RELATION_COMPRESS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    _write(tmp_path / "cache" / "test.jsonl", ROWS, "jsonl")
    _write(tmp_path / "train.jsonl", ROWS, "jsonl")
    spec = tmp_path / "t.yaml"
    spec.write_text("kind: classification\ndata: {train: train.jsonl, test: '{cache}/test.jsonl'}\nmax_examples: 4\n"
                    "prefix: 'query: '\nbuild_hint: run the builder\n")
    task = load_task(str(spec))
    assert task.name == "t" and task.headline == "accuracy"
    rows = task.rows("test")
    # Stratified by language (6 en, 4 de → 2 + 2), spread evenly within each, in file order.
    assert [r["text"] for r in rows] == ["sentence 0", "sentence 3", "sentence 6", "sentence 8"]
    assert task.texts(rows)[0] == "query: sentence 0"
    with pytest.raises(UserError, match="no 'dev' split"):
        task.rows("dev")
    (tmp_path / "cache" / "test.jsonl").unlink()
    with pytest.raises(UserError, match="run the builder"):
        task.rows("test")
    spec.write_text("kind: classification\ndata: {test: train.jsonl}\nlabel_field: sentiment\n")
    with pytest.raises(UserError, match="lack field"):
        load_task(str(spec)).rows("test")
    spec.write_text("kind: classification\ndata: {test: train.jsonl}\nlabels_field: x\n")
    with pytest.raises(UserError, match="unknown key labels_field"):
        load_task(str(spec))
    with pytest.raises(UserError, match="unknown task 'nope'"):
        load_task("nope")


def test_every_shipped_task_file_loads():
    names = available_tasks()
    assert {"sentiment-en", "langid", "bitext", "fidelity"} <= set(names)
    for name in names:
        task = load_task(name)
        assert task.data and task.build_hint


# --- one scoring path for PyTorch and ONNX Runtime ------------------------------------------------------

@pytest.mark.parametrize("family", ["bert", "roberta", "xlmr"])
def test_torch_free_tokenizer_matches_autotokenizer(request, family):
    folder = request.getfixturevalue(f"tiny_{family}_dir_shared")
    texts = [line for lines in SAMPLE_BY_LANGUAGE.values() for line in lines[:2]]
    ours = encode_batch(load_tokenizer(folder, 32), texts, texts[::-1])
    theirs = AutoTokenizer.from_pretrained(folder)(texts, texts[::-1], padding=True, truncation=True, max_length=32,
                                                   return_tensors="np")
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key], theirs[key])


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_xlmr_dir_shared):
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    export_fp32(tiny_xlmr_dir_shared, out, task="feature-extraction", opset=18)
    return tiny_xlmr_dir_shared, out


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """A multilingual classification task (label = language), a bitext task and a fidelity task."""
    d = tmp_path_factory.mktemp("tasks")
    rows = [{"text": t, "label": lang, "language": lang} for lang in ("en", "de", "es", "ru")
            for t in SAMPLE_BY_LANGUAGE[lang][:8]]
    _write(d / "lang.jsonl", rows, "jsonl")
    (d / "langid.yaml").write_text("kind: classification\ndata: {train: lang.jsonl, test: lang.jsonl}\n")
    pairs = [{"source": en, "target": other, "language": lang} for lang in ("de", "es")
             for en, other in zip(SAMPLE_BY_LANGUAGE["en"], SAMPLE_BY_LANGUAGE[lang])]
    _write(d / "pairs.jsonl", pairs, "jsonl")
    (d / "bitext.yaml").write_text("kind: bitext\ndata: {test: pairs.jsonl}\n")
    (d / "fidelity.yaml").write_text("kind: fidelity\ndata: {test: pairs.jsonl}\ntext_field: target\n")
    return d


def test_ort_and_torch_give_the_same_scores(exported, task_dir):
    model_dir, onnx_dir = exported
    torch_enc, ort_enc = TorchEncoder(model_dir), OrtEncoder(onnx_dir)
    assert ort_enc.session.get_session_options().get_session_config_entry(
        "optimization.disable_specified_optimizers") == "SkipLayerNormFusion"
    texts = SAMPLE_BY_LANGUAGE["en"]
    np.testing.assert_allclose(ort_enc.embed(texts), torch_enc.embed(texts), atol=1e-4)

    for name in ("langid", "bitext"):
        task = load_task(str(task_dir / f"{name}.yaml"))
        a, b = evaluate(task, torch_enc), evaluate(task, ort_enc)
        assert [(s["metric"], s["language"]) for s in a] == [(s["metric"], s["language"]) for s in b]
        for x, y in zip(a, b):
            assert x["value"] == pytest.approx(y["value"], abs=0.04), (name, x)
    langid = classification_scores(load_task(str(task_dir / "langid.yaml")), ort_enc)
    assert {s["language"] for s in langid} == {None, "en", "de", "es", "ru"}
    assert all(s["method"] == "probe" for s in langid)
    bitext = bitext_scores(load_task(str(task_dir / "bitext.yaml")), ort_enc)
    per_language = [s["value"] for s in bitext if s["metric"] == "accuracy" and s["language"]]
    assert bitext[0]["value"] == pytest.approx(np.mean(per_language))

    fidelity = load_task(str(task_dir / "fidelity.yaml"))
    same = {s["metric"]: s["value"] for s in fidelity_scores(fidelity, ort_enc, torch_enc, same_space=True)}
    assert same["similarity_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert same["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UserError, match="reference"):
        evaluate(fidelity, ort_enc)


def test_memoized_reference_embeds_each_list_once(exported, task_dir):
    """The bench's fidelity reference: a repeated list is answered from memory, with the encoder's own values."""
    ort_enc = OrtEncoder(exported[1])
    memo = MemoizedEncoder(ort_enc)
    texts, other = SAMPLE_BY_LANGUAGE["en"], SAMPLE_BY_LANGUAGE["de"]
    first = memo.embed(texts)
    assert memo.embed(list(texts)) is first  # an equal list, not recomputed
    np.testing.assert_array_equal(first, ort_enc.embed(texts))
    np.testing.assert_array_equal(memo.embed(other), ort_enc.embed(other))
    assert (memo.name, memo.labels) == (ort_enc.name, ort_enc.labels)
    fidelity = load_task(str(task_dir / "fidelity.yaml"))
    assert fidelity_scores(fidelity, ort_enc, memo, same_space=True) == fidelity_scores(fidelity, ort_enc, ort_enc, same_space=True)


def test_ort_encoder_errors(tmp_path, exported):
    with pytest.raises(UserError, match="no model.onnx"):
        OrtEncoder(tmp_path)
    with pytest.raises(UserError, match="no 'logits' output"):
        OrtEncoder(exported[1]).logits(["a text"])


def test_max_examples_keeps_every_language_of_a_round_robin_file(tmp_path):
    """A file written round-robin over 15 languages, capped at 150 of its 900 rows: evenly spaced rows
    would keep 5 languages; the stratified sample keeps all 15, 10 rows each, in file order."""
    from collections import Counter

    from bench.tasks import TaskSpec

    languages = [f"l{i:02d}" for i in range(15)]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps({"source": f"s{i}", "target": f"t{i}", "language": languages[i % 15]}) + "\n"
                            for i in range(900)))
    task = TaskSpec(name="rr", kind="bitext", data={"test": str(path)}, max_examples=150)
    rows = task.rows("test")
    assert len(rows) == 150 and Counter(r["language"] for r in rows) == {lang: 10 for lang in languages}
    order = [int(r["source"][1:]) for r in rows]
    assert order == sorted(order) and task.rows("test") == rows  # file order, deterministic
    # Unequal languages keep shares proportional to their rows, and a rare one is not dropped.
    path.write_text("".join(json.dumps({"source": f"s{i}", "target": "t", "language": "big" if i < 95 else f"r{i}"}) + "\n"
                            for i in range(100)))
    counts = Counter(r["language"] for r in TaskSpec(name="u", kind="bitext", data={"test": str(path)},
                                                     max_examples=20).rows("test"))
    assert sum(counts.values()) == 20 and set(counts) == {"big", "r95", "r96", "r97", "r98", "r99"} and counts["big"] == 15
