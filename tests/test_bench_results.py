"""The bench as a user reads it: typed results (old files still load), the recommendation as data, labels on the
latency plot that never overlap, the end-to-end request (text in, embedding out) and the one thread count."""

import json
import os
import shutil

import numpy as np
import pytest

from bench.encoders import OrtEncoder, TextRequest, pool, sentence_pooling
from bench.machine import available_cores, bench_threads, machine_facts
from bench.ort_session import request_texts
from bench.recommend import recommend
from bench.report import LABEL_GID, latency_accuracy_figure, make_results, timing_row, write_report
from bench.results import PRECISIONS, Recommendation, Results, load_results, parse_results
from bench.timing import TimingStats
from bench.tokenization import load_tokenizer
from compress.errors import UserError
from export.sessions import make_session
from reference.tiny_models import SAMPLE_TEXT
from tests.test_bench_core import _sample_results, _settings, _variant, tiny_bert_onnx  # noqa: F401 (a fixture)


# --- recommend(): the decision as data ------------------------------------------------------------------

def test_recommend_returns_the_decision_as_data():
    rec = recommend(_sample_results(providers=("cpu", "cuda"), openvino=True))
    assert isinstance(rec, Recommendation) and rec.near_best == 0.01
    assert [p.provider for p in rec.providers] == ["cpu", "cuda"]
    cpu = rec.providers[0]
    assert (cpu.batch, cpu.seq_len, cpu.threads) == (1, 128, 2)
    assert [p.variant for p in cpu.by_latency] == ["student-openvino-int8", "student-int8", "student-int8-qat",
                                                   "student-fp32", "teacher"]
    xnli = next(t for t in cpu.tasks if t.task == "xnli")
    assert xnli.metric == "accuracy" and xnli.best_score == pytest.approx(0.85)
    # the fastest variant within 1 % of the best accuracy, across runtimes: OpenVINO's INT8 (0.845 ≥ 0.8415)
    assert (xnli.ship.variant, xnli.ship.format, xnli.ship.score) == ("student-openvino-int8", "openvino", 0.845)
    assert [p.variant for p in xnli.pareto_front] == ["student-openvino-int8", "student-int8-qat", "teacher"]
    assert all(a.latency_ms <= b.latency_ms for a, b in zip(xnli.pareto_front, xnli.pareto_front[1:]))
    # ranked by the end-to-end p50 (every row has one); one budget per scored variant's own, the best that fits
    assert cpu.ranked_by == "end_to_end" and all(p.latency_ms == p.e2e_p50_ms for p in cpu.by_latency)
    assert [b.p50_ms for b in cpu.budgets] == sorted(p.e2e_p50_ms for p in cpu.by_latency)
    assert [b.best["xnli"].variant for b in cpu.budgets] == [
        "student-openvino-int8", "student-openvino-int8", "student-int8-qat", "student-int8-qat", "teacher"]


def test_recommend_without_scores_ranks_by_latency():
    rec = recommend(_sample_results(scores=False, providers=("cpu",)))
    (cpu,) = rec.providers
    assert cpu.tasks == [] and cpu.budgets == []
    assert [p.variant for p in cpu.by_latency][0] == "student-int8"
    assert [p.p50_ms for p in cpu.by_latency] == sorted(p.p50_ms for p in cpu.by_latency)


def _ranking_results():
    """Three variants within 1 % of the best score at b1×128 on the CPU: the fastest model call with a slow request
    (a slow tokenizer), the fastest request, and a PyTorch row timed without its end-to-end figures."""
    rows = {"student-fp32": (1.0, 6.0, 0.850), "student-int8": (2.0, 3.0, 0.848), "student-torch-fp32": (4.0, None, 0.849)}
    variants, timings, scores = [], [], []
    for name, (model_ms, e2e_ms, score) in rows.items():
        variants.append(_variant(name, fmt="torch" if "torch" in name else "onnx"))
        e2e = None if e2e_ms is None else TimingStats.from_samples([e2e_ms / 1000] * 5)
        timings.append(timing_row(name, "cpu", 1, 128, 2, TimingStats.from_samples([model_ms / 1000] * 5), e2e))
        scores.append({"variant": name, "task": "xnli", "metric": "accuracy", "language": None, "value": score})
    return make_results(machine={}, settings=_settings(providers=["cpu"]), variants=variants, timings=timings,
                        scores=scores)


def test_recommend_ranks_by_what_a_request_pays(tmp_path):
    """The end-to-end p50 ranks (the model call's where a row has none), and the record and the text say so."""
    (cpu,) = recommend(_ranking_results()).providers
    assert cpu.ranked_by == "mixed"
    assert [(p.variant, p.latency_ms) for p in cpu.by_latency] == [
        ("student-int8", pytest.approx(3.0)), ("student-torch-fp32", pytest.approx(4.0)), ("student-fp32", pytest.approx(6.0))]
    (xnli,) = cpu.tasks
    # by the model call alone student-fp32 (1.0 ms, the best score) would be shipped and dominate the front
    assert xnli.ship.variant == "student-int8" and xnli.ship.p50_ms == pytest.approx(2.0)
    assert [p.variant for p in xnli.pareto_front] == ["student-int8", "student-torch-fp32", "student-fp32"]
    assert [(b.p50_ms, b.best["xnli"].variant) for b in cpu.budgets] == [
        (pytest.approx(3.0), "student-int8"), (pytest.approx(4.0), "student-torch-fp32"), (pytest.approx(6.0), "student-fp32")]
    md = write_report(tmp_path, _ranking_results())["md"].read_text()
    ship = md[md.index("## Which model to ship"):md.index("\n## cpu\n")]
    assert "Ranked by the end-to-end p50; † a variant timed without it" in ship
    assert "ship **student-int8** on ONNX Runtime (accuracy 0.8480, end-to-end p50 3.00 ms, model call 2.00 ms" in ship
    assert "student-torch-fp32 (4.00 ms†, 0.8490)" in ship
    stored = json.loads((tmp_path / "results.json").read_text())["recommendation"]["providers"][0]
    assert stored["ranked_by"] == "mixed" and stored["tasks"][0]["ship"]["latency_ms"] == pytest.approx(3.0)


def test_recommend_ranking_is_named_for_each_provider():
    assert recommend(_sample_results(providers=("cpu",))).providers[0].ranked_by == "end_to_end"
    old = json.loads(json.dumps(_sample_results(providers=("cpu",))))
    for t in old["timings"]:
        t["end_to_end"] = None
    (cpu,) = recommend(old).providers
    assert cpu.ranked_by == "model_call" and all(p.latency_ms == p.p50_ms for p in cpu.by_latency)


def test_results_json_stores_the_recommendation(tmp_path):
    results = _sample_results(providers=("cpu",), openvino=True)
    write_report(tmp_path, results)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["recommendation"] == recommend(results).model_dump(mode="json")
    assert load_results(tmp_path / "results.json").recommendation == recommend(results)


# --- typed results: old files, bad files ----------------------------------------------------------------

def test_results_without_the_new_fields_still_load(tmp_path):
    """A results.json written before end_to_end, recommendation and the fixed thread count loads and re-renders."""
    old = json.loads(json.dumps(_sample_results(providers=("cpu",))))
    del old["recommendation"]
    old["settings"]["threads"] = None
    for t in old["timings"]:
        del t["end_to_end"]
        t["threads"] = None
    (tmp_path / "results.json").write_text(json.dumps(old))
    loaded = load_results(tmp_path / "results.json")
    assert isinstance(loaded, Results) and loaded.recommendation is None
    assert all(t.end_to_end is None for t in loaded.timings)
    written = write_report(tmp_path / "again", loaded)
    md = written["md"].read_text()
    assert "ship **student-int8-qat**" in md and "end-to-end p50" not in md.split("## cpu")[1].split("##")[0]
    assert "Threads: each runtime's default." in md


def test_precisions_are_the_export_tables_and_pytorchs(tmp_path):
    """No fp16 (nothing makes it); a results.json from when bench called the QAT variants' precision int8-qat loads."""
    from compress.variants import VARIANTS

    assert set(PRECISIONS) == {v.precision for v in VARIANTS} | {"fp32", "bf16"} and "fp16" not in PRECISIONS
    old = json.loads(json.dumps(_sample_results(providers=("cpu",))))
    qat = next(v for v in old["variants"] if v["name"] == "student-int8-qat")
    qat["precision"] = "int8-qat"
    (tmp_path / "results.json").write_text(json.dumps(old))
    loaded = {v.name: v.precision for v in load_results(tmp_path / "results.json").variants}
    assert loaded[qat["name"]] == "int8"
    qat["precision"] = "fp16"
    with pytest.raises(ValueError, match=r"variants\[\d\]\.precision"):
        parse_results(old)


def test_bad_results_json_is_one_user_error_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="is not a results.json"):
        load_results(tmp_path / "broken.json")
    bad = json.loads(json.dumps(_sample_results(providers=("cpu",))))
    bad["timings"][0]["end_to_end"]["p50_ms"] = -1.0
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UserError) as err:
        load_results(tmp_path / "bad.json")
    assert "timings[0].end_to_end.p50_ms" in str(err.value) and "\n" not in str(err.value)


def test_end_to_end_statistics_in_every_file(tmp_path):
    results = _sample_results(providers=("cpu",))
    row = results["timings"][0]
    assert set(row["end_to_end"]) >= {"runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms"}
    assert row["end_to_end"]["p50_ms"] > row["p50_ms"]
    written = write_report(tmp_path, results)
    import csv

    with open(written["csv"], newline="") as f:
        first = next(csv.DictReader(f))
    assert float(first["e2e_p50_ms"]) == pytest.approx(row["end_to_end"]["p50_ms"])
    md = written["md"].read_text()
    assert "p50 / p90 ms (end-to-end p50)" in md and "text in, tokenization" in md
    rec = parse_results(json.loads(written["json"].read_text())).recommendation
    assert rec.providers[0].tasks[0].ship.e2e_p50_ms is not None


# --- the latency plot's labels ---------------------------------------------------------------------------

def _clustered_results():
    """Eight variants on top of one another, a 5 × 5 grid of variants a few points apart (their names cannot all
    fit beside them), and two variants well apart."""
    variants, timings, scores = [], [], []
    points = {f"student-v{i}": (1.0 + 0.001 * i, 0.84 + 0.0001 * i) for i in range(8)}
    points |= {f"grid-{i}{j}": (3.0 * 1.12**i, 0.74 + 0.007 * j) for i in range(5) for j in range(5)}
    points |= {"teacher": (20.0, 0.86), "student-tiny": (0.4, 0.70)}
    for name, (ms, score) in points.items():
        variants.append(_variant(name))
        for batch in (1, 8):
            stats = TimingStats.from_samples([ms * batch / 1000] * 5)
            timings.append(timing_row(name, "cpu", batch, 128, 2, stats, TimingStats.from_samples([ms * batch / 800] * 5)))
        scores.append({"variant": name, "task": "xnli", "metric": "accuracy", "language": None, "value": score})
        scores.append({"variant": name, "task": "sts", "metric": "spearman", "language": None, "value": score - 0.1})
    return make_results(machine={}, settings=_settings(providers=["cpu"]), variants=variants, timings=timings,
                        scores=scores)


def test_plot_labels_do_not_overlap_on_clustered_points():
    results = _clustered_results()
    fig = latency_accuracy_figure(results)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    names = sorted(v["name"] for v in results["variants"])
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        labels = [t for t in ax.texts if t.get_gid() == LABEL_GID]
        boxes = [t.get_window_extent(renderer) for t in labels]
        area = ax.get_window_extent(renderer)
        for i, a in enumerate(boxes):
            assert area.x0 <= a.x0 and a.x1 <= area.x1 and area.y0 <= a.y0 and a.y1 <= area.y1, labels[i].get_text()
            for j in range(i + 1, len(boxes)):
                assert not a.overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
        # every variant is named once: beside its point (points on one another share a label, a name per line), or
        # by its own marker in the legend where no spot was free
        labelled = [n for t in labels for n in t.get_text().split("\n")]
        in_legend = [n for t in ax.get_legend().get_texts() for n in t.get_text().split(", ") if n in names]
        assert sorted(labelled + in_legend) == names
        assert any(t.get_text().count("\n") == 7 for t in labels)  # the eight on one another: one label
        assert in_legend and "teacher" in labelled and "student-tiny" in labelled


# --- the end-to-end request ------------------------------------------------------------------------------

def test_request_texts_are_real_text_of_about_seq_len_tokens(tiny_bert_onnx):
    tokenizer = load_tokenizer(tiny_bert_onnx, 512)
    for seq_len in (8, 24, 64):
        rows = request_texts(tokenizer, SAMPLE_TEXT, 4, seq_len)
        assert len(rows) == 4 and len(set(rows)) == 4 and all(r.strip() for r in rows)
        lengths = [len(tokenizer.encode(r).ids) for r in rows]
        assert all(seq_len - 1 <= n <= seq_len for n in lengths), (seq_len, lengths)
    with pytest.raises(ValueError, match="no tokens"):
        request_texts(tokenizer, ["", "  "], 2, 16)


def test_text_request_is_the_embedding_a_user_gets(tiny_bert_onnx, tmp_path):
    """Text in, mean-pooled [B, H] out (the scoring encoder's embedding); L2-normalized where the folder's
    sentence-transformers modules say so."""
    session = make_session(tiny_bert_onnx / "model.onnx", "cpu", threads=1)
    texts = request_texts(load_tokenizer(tiny_bert_onnx, 512), SAMPLE_TEXT, 3, 24)
    request = TextRequest(session, load_tokenizer(tiny_bert_onnx, 24), texts, tiny_bert_onnx)
    out = request()
    assert out.shape == (3, 64) and out.dtype == np.float32
    expected = OrtEncoder(tiny_bert_onnx, session=session, max_length=24).embed(texts)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

    folder = tmp_path / "normalized"
    shutil.copytree(tiny_bert_onnx, folder)
    from compress.sentence_modules import write_sentence_modules

    write_sentence_modules(folder, hidden=64, max_seq_length=24,
                           pooling={"pooling": {"pooling_mode_mean_tokens": True}, "normalize": True})
    assert sentence_pooling(folder) == ("mean", True) and sentence_pooling(tiny_bert_onnx) == ("mean", False)
    normalized = TextRequest(session, load_tokenizer(folder, 24), texts, folder)()
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(normalized, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_pool_modes_by_hand():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(pool(hidden, mask, "mean"), [[1, 2], [6, 7]])
    np.testing.assert_allclose(pool(hidden, mask, "cls"), [[0, 1], [6, 7]])
    np.testing.assert_allclose(pool(hidden, mask, "max"), [[2, 3], [6, 7]])
    np.testing.assert_allclose(np.linalg.norm(pool(hidden, mask, "mean", normalize=True), axis=1), 1.0, rtol=1e-6)


# --- one thread count ------------------------------------------------------------------------------------

def test_one_thread_count_chosen_once():
    assert bench_threads(3) == (3, "bench.threads")
    threads, source = bench_threads(None)
    assert source == "physical cores" and threads == available_cores()
    assert 1 <= threads <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert threads <= len(os.sched_getaffinity(0))
    assert machine_facts(threads)["threads"] == threads
