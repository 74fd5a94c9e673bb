"""The timing and report core of ``compress bench``: statistics, the timing loop, Pareto choices, real ONNX Runtime
sessions on a tiny exported BERT, provider errors, and the results files (schema, CSV, Markdown, PNG plots)."""

import csv
import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.machine import machine_facts
from bench.ort_session import SessionRunner, make_feeds, providers_used
from export.sessions import PROVIDERS, check_provider, make_session
from bench.pareto import best_under_budget, pareto_front
from bench.report import headline_metrics, make_results, reference_shapes, timing_row, validate_results, write_report
from bench.timing import TimingStats, measure, throughput
from bench.tokenization import load_tokenizer
from compress.errors import UserError
from reference.tiny_models import SAMPLE_TEXT

REPO = Path(__file__).resolve().parent.parent


# --- statistics and the timing loop ------------------------------------------------------------------

def test_percentiles_of_a_known_series():
    stats = TimingStats.from_samples([i / 1000 for i in range(1, 101)])  # 1, 2, ..., 100 ms
    assert stats.runs == 100
    # numpy's linear method: rank (n-1)·p/100 → 49.5 → 50.5 ms, 89.1 → 90.1 ms, 98.01 → 99.01 ms
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert (stats.min_ms, stats.max_ms, stats.mean_ms) == pytest.approx((1.0, 100.0, 50.5))
    assert stats.total_s == pytest.approx(5.05)
    assert stats.std_ms == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std of 1..100
    assert list(stats.as_dict()) == ["runs", "total_s", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms",
                                     "std_ms"]
    one = TimingStats.from_samples([0.002])
    assert (one.p50_ms, one.p99_ms, one.std_ms) == pytest.approx((2.0, 2.0, 0.0))
    for bad in ([], [0.001, -0.001], [float("nan")]):
        with pytest.raises(ValueError):
            TimingStats.from_samples(bad)


def test_measure_counts_warmup_and_min_runs():
    calls = []
    stats = measure(lambda: calls.append(1), warmup=3, min_time_s=0.0, min_runs=25)
    assert len(calls) == 28 and stats.runs == 25
    assert 0 <= stats.min_ms <= stats.p50_ms <= stats.max_ms


def test_measure_runs_at_least_min_time_and_restores_gc():
    calls = []
    start = time.perf_counter()
    stats = measure(lambda: calls.append(sum(range(200))), warmup=0, min_time_s=0.05, min_runs=2)
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.05
    assert stats.runs == len(calls) and stats.runs > 2  # a fast function needs many calls to fill 50 ms
    assert gc.isenabled()
    # a slow function: min_runs governs, whatever min_time says
    slow = measure(lambda: time.sleep(0.002), warmup=0, min_time_s=0.0, min_runs=4)
    assert slow.runs == 4 and slow.min_ms >= 2.0


def test_measure_max_runs_caps_and_bad_arguments():
    stats = measure(lambda: None, warmup=0, min_time_s=60.0, min_runs=5, max_runs=15)
    assert stats.runs == 15
    with pytest.raises(ValueError):
        measure(lambda: None, min_runs=10, max_runs=5)
    with pytest.raises(ValueError):
        measure(lambda: None, min_runs=0)
    with pytest.raises(ValueError):
        measure(lambda: None, warmup=-1)


def test_throughput_arithmetic():
    stats = TimingStats.from_samples([0.004] * 10)  # 4 ms a call
    assert throughput(stats, 8, 128) == pytest.approx({"sequences_per_s": 2000.0, "tokens_per_s": 256000.0})
    assert throughput(stats, 1, 32) == pytest.approx({"sequences_per_s": 250.0, "tokens_per_s": 8000.0})
    with pytest.raises(ValueError):
        throughput(stats, 0, 32)
    with pytest.raises(ValueError):
        throughput(TimingStats.from_samples([0.0]), 1, 32)


# --- Pareto front and budgets ------------------------------------------------------------------------

def test_pareto_front_by_hand():
    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (0.5, 0.4), (1.0, 0.5), (4.0, 0.9)]
    # (2, 0.6) loses to (2, 0.7) on score at equal latency; (3, 0.7) loses to (2, 0.7) on latency at equal score;
    # the two (1, 0.5) do not dominate each other: both stay. Fastest first.
    assert pareto_front(points) == [4, 0, 5, 1, 6]
    assert pareto_front([(3.0, 0.1)]) == [0]
    assert pareto_front([]) == []
    # missing or non-finite values are never on the front and dominate nothing
    assert pareto_front([(1.0, None), (2.0, 0.5), (float("nan"), 0.9), (0.1, float("inf"))]) == [1]
    # a point better on both axes leaves a front of one
    assert pareto_front([(5.0, 0.5), (1.0, 0.9), (3.0, 0.7)]) == [1]


def test_best_under_budget():
    rows = [{"v": "teacher", "ms": 20.0, "acc": 0.85}, {"v": "fp32", "ms": 4.0, "acc": 0.83},
            {"v": "int8", "ms": 1.5, "acc": 0.826}, {"v": "qat", "ms": 1.6, "acc": 0.826},
            {"v": "unscored", "ms": 0.5, "acc": None}]
    pick = lambda budget: (best_under_budget(rows, "ms", "acc", budget) or {}).get("v")  # noqa: E731
    assert pick(0.4) is None
    assert pick(1.0) is None  # only the unscored row fits
    assert pick(1.55) == "int8"
    assert pick(1.6) == "int8"  # equal score: the faster one
    assert pick(4.0) == "fp32"  # the budget is inclusive
    assert pick(1000.0) == "teacher"


# --- ONNX Runtime on CPU -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_bert_onnx(tiny_bert_dir_shared, tmp_path_factory) -> Path:
    """The tiny BERT exported to ONNX (folder with model.onnx and tokenizer files), built once."""
    from export.onnx_export import export_fp32

    return export_fp32(tiny_bert_dir_shared, tmp_path_factory.mktemp("bench-core") / "fp32",
                       task="feature-extraction", opset=18)


def test_cpu_session_end_to_end(tiny_bert_onnx):
    session = make_session(tiny_bert_onnx / "model.onnx", "cpu", threads=1)
    assert providers_used(session) == ["CPUExecutionProvider"]
    key = "optimization.disable_specified_optimizers"  # SkipLayerNorm fusion off on CPU (export.fusion)
    assert session.get_session_options().get_session_config_entry(key) == "SkipLayerNormFusion"
    names = [i.name for i in session.get_inputs()]
    feeds = make_feeds(load_tokenizer(tiny_bert_onnx, 512), SAMPLE_TEXT, 2, 24, names)
    assert set(feeds) == set(names)
    ids = feeds["input_ids"]
    assert ids.shape == (2, 24) and ids.dtype == np.int64
    assert (ids[:, 0] == 2).all() and (ids[:, -1] == 3).all()  # [CLS] … [SEP] (tiny BERT ids)
    assert not np.isin(ids[:, 1:-1], [0, 2, 3]).any()  # real text inside: no padding, no inner specials
    assert not np.array_equal(ids[0], ids[1])  # the second row continues the text
    assert (feeds["attention_mask"] == 1).all() and (feeds.get("token_type_ids", np.zeros(1)) == 0).all()

    runner = SessionRunner(session, feeds, "cpu")
    (hidden,) = runner.outputs()
    np.testing.assert_array_equal(hidden, session.run(None, feeds)[0])
    assert hidden.shape == (2, 24, 64)
    stats = measure(runner, warmup=2, min_time_s=0.05, min_runs=5)
    assert stats.runs >= 5
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms < 1000
    row = timing_row("student-fp32", "cpu", 2, 24, 1, stats, providers_used=providers_used(session))
    assert row["sequences_per_s"] == pytest.approx(2000 / stats.mean_ms)
    results = make_results(machine=machine_facts(1), settings=_settings(batch_sizes=[2], seq_lengths=[24]),
                           variants=[_variant("student-fp32", size_bytes=(tiny_bert_onnx / "model.onnx").stat().st_size)],
                           timings=[row])
    validate_results(json.loads(json.dumps(results)))


def test_make_feeds_accepts_both_tokenizer_kinds(tiny_bert_onnx, tiny_roberta_dir_shared):
    from transformers import AutoTokenizer

    fast = make_feeds(AutoTokenizer.from_pretrained(tiny_bert_onnx), SAMPLE_TEXT, 3, 40)
    raw = make_feeds(load_tokenizer(tiny_bert_onnx, 16), SAMPLE_TEXT, 3, 40)  # its truncation at 16 is ignored
    for name in fast:
        np.testing.assert_array_equal(fast[name], raw[name])
    roberta = AutoTokenizer.from_pretrained(tiny_roberta_dir_shared)
    feeds = make_feeds(roberta, SAMPLE_TEXT, 4, 33, ["input_ids", "attention_mask"])
    ids = feeds["input_ids"]
    assert set(feeds) == {"input_ids", "attention_mask"} and ids.shape == (4, 33)
    assert (ids[:, 0] == 0).all() and (ids[:, -1] == 2).all()  # <s> … </s>
    assert not np.isin(ids[:, 1:-1], [0, 1, 2]).any()  # no <pad>, no inner specials
    assert "quick brown fox" in roberta.decode(ids[0])  # the first line of the text
    # cycling: a single short line fills any length
    assert make_feeds(roberta, ["Yes."], 2, 50)["input_ids"].shape == (2, 50)


def test_tokenizers_are_parsed_once_per_content_and_length(tiny_bert_onnx, tmp_path):
    """Every variant of a run carries the same tokenizer.json: the bench parses it once per length (a 250k
    vocabulary takes 0.7 s and 260 MiB each time), and the unbounded form cuts the same inputs, uncopied."""
    import shutil

    from bench import tokenization
    from bench.ort_session import request_texts

    twin = tmp_path / "twin"
    twin.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert_onnx / name).exists():
            shutil.copy(tiny_bert_onnx / name, twin / name)
    first = load_tokenizer(tiny_bert_onnx, 16)
    assert load_tokenizer(twin, 16) is first  # same content, same length: one object
    assert load_tokenizer(twin, 32) is not first and load_tokenizer(twin, 32).truncation["max_length"] == 32
    raw = load_tokenizer(twin, None)
    assert raw.padding is None and raw.truncation is None
    assert first.truncation["max_length"] == 16 and first.padding is not None  # nobody reconfigured the shared one
    np.testing.assert_array_equal(make_feeds(raw, SAMPLE_TEXT, 3, 40)["input_ids"],
                                  make_feeds(first, SAMPLE_TEXT, 3, 40)["input_ids"])
    assert request_texts(raw, SAMPLE_TEXT, 2, 24) == request_texts(first, SAMPLE_TEXT, 2, 24)
    assert raw.padding is None and raw.truncation is None  # cutting inputs left it as it was

    data = json.loads((twin / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["vocab"]["zebra"] = len(data["model"]["vocab"])  # another vocabulary: another tokenizer
    (twin / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    other = load_tokenizer(twin, 16)
    assert other is not first and other.token_to_id("zebra") is not None and first.token_to_id("zebra") is None
    for length in range(1, 2 * tokenization._KEEP):  # the cache keeps a few, not every one ever loaded
        load_tokenizer(twin, length)
    assert len(tokenization._LOADED) == tokenization._KEEP


def test_make_feeds_errors(tiny_bert_onnx):
    tok = load_tokenizer(tiny_bert_onnx, 128)
    with pytest.raises(UserError, match="position_ids"):
        make_feeds(tok, SAMPLE_TEXT, 1, 16, ["input_ids", "position_ids"])
    with pytest.raises(ValueError, match="special tokens"):
        make_feeds(tok, SAMPLE_TEXT, 1, 2)
    with pytest.raises(ValueError, match="no tokens"):
        make_feeds(tok, ["", "  "], 1, 16)
    with pytest.raises(TypeError):
        make_feeds(object(), SAMPLE_TEXT, 1, 16)


def _two_input_model(path: Path) -> Path:
    """int32 input_ids + int64 attention_mask (no token_type_ids) → summed embeddings [B, 4]."""
    emb = numpy_helper.from_array(np.arange(400, dtype=np.float32).reshape(100, 4), "emb")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["tok"]),
         helper.make_node("ReduceSum", ["tok", "axes"], ["pooled"], keepdims=0)],
        "two_inputs",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["b", "s"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["b", 4])], initializer=[emb, axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


def test_runner_feeds_only_declared_inputs_in_their_type(tmp_path):
    session = make_session(_two_input_model(tmp_path / "m.onnx"), "cpu", threads=None)
    ids = np.array([[1, 2, 3]], dtype=np.int64)
    runner = SessionRunner(session, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                     "token_type_ids": np.zeros_like(ids)}, "cpu")
    assert set(runner.feeds) == {"input_ids", "attention_mask"} and runner.feeds["input_ids"].dtype == np.int32
    np.testing.assert_allclose(runner.outputs()[0], np.arange(400).reshape(100, 4)[[1, 2, 3]].sum(0, keepdims=True))
    with pytest.raises(ValueError, match="attention_mask"):
        SessionRunner(session, {"input_ids": ids}, "cpu")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_missing_and_unknown_providers(tiny_bert_onnx):
    available = ort.get_available_providers()
    assert check_provider("cpu") == "CPUExecutionProvider" and check_provider(" CPU ") == "CPUExecutionProvider"
    with pytest.raises(UserError) as err:
        check_provider("cuda")
    message = str(err.value)
    assert "\n" not in message and "CUDAExecutionProvider" in message and "onnxruntime-gpu" in message
    assert all(p in message for p in available)
    with pytest.raises(UserError, match="TensorRT") as err:
        check_provider("tensorrt")
    with pytest.raises(UserError) as err:
        check_provider("tpu")
    message = str(err.value)
    assert "unknown provider 'tpu'" in message and all(name in message for name in PROVIDERS)
    assert all(p in message for p in available)
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        make_session(tiny_bert_onnx / "model.onnx", "cuda", threads=1)


def test_make_session_errors(tmp_path):
    with pytest.raises(UserError, match="compress export"):
        make_session(tmp_path / "missing.onnx", "cpu", threads=1)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load"):
        make_session(tmp_path / "broken.onnx", "cpu", threads=1)


# --- results: schema, files, plots ---------------------------------------------------------------------

def _settings(**over):
    return {"providers": ["cpu"], "batch_sizes": [1, 8], "seq_lengths": [32, 128], "threads": 2, "warmup": 5,
            "min_time_s": 1.0, "min_runs": 10} | over


def _variant(name, precision="fp32", size_bytes=1_000_000, parameters=1_000_000, fmt="onnx"):
    return {"name": name, "run": "runs/demo", "path": f"runs/demo/export/{name}/model.onnx", "format": fmt,
            "precision": precision, "size_bytes": size_bytes, "parameters": parameters}


def _sample_results(scores=True, providers=("cpu", "cuda"), openvino=False):
    base = {"teacher": 20.0, "student-fp32": 4.0, "student-int8": 1.5, "student-int8-qat": 1.6}
    precision = {"teacher": "fp32", "student-fp32": "fp32", "student-int8": "int8", "student-int8-qat": "int8"}
    if openvino:  # an OpenVINO INT8 faster than ORT's, within 1 % of the best score
        base["student-openvino-int8"], precision["student-openvino-int8"] = 1.2, "int8"
    rng = np.random.default_rng(0)
    timings = []
    for provider in providers:
        speed = 1.0 if provider == "cpu" else 0.2
        for name, ms in base.items():
            for batch in (1, 8):
                for seq in (32, 128):
                    mean = ms * speed * batch**0.8 * seq / 128 / 1000
                    stats = TimingStats.from_samples(mean * (1 + 0.05 * rng.random(40)))
                    e2e = TimingStats.from_samples((mean + 2e-4 * batch) * (1 + 0.05 * rng.random(40)))  # + tokenizing
                    timings.append(timing_row(name, provider, batch, seq, 2, stats, e2e))
    rows = []
    if scores:
        acc = {"teacher": 0.85, "student-fp32": 0.843, "student-int8": 0.80, "student-int8-qat": 0.846,
               "student-openvino-int8": 0.845}
        for name, value in acc.items():
            if name not in base:
                continue
            rows.append({"variant": name, "task": "xnli", "metric": "accuracy", "language": None, "value": value})
            rows.append({"variant": name, "task": "xnli", "metric": "macro_f1", "language": None, "value": value - 0.01})
            rows.append({"variant": name, "task": "sts", "metric": "spearman", "language": None, "value": value - 0.1})
            for i, lang in enumerate(("en", "de", "zh")):
                rows.append({"variant": name, "task": "xnli", "metric": "accuracy", "language": lang,
                             "value": value - 0.02 * i})
    return make_results(machine=machine_facts(2), settings=_settings(providers=list(providers)),
                        variants=[_variant(n, precision[n], size_bytes=int(ms * 5e6),
                                           fmt="openvino" if "openvino" in n else "onnx") for n, ms in base.items()],
                        timings=timings, scores=rows)


def _check_png(path: Path) -> None:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300
    assert pixels[..., :3].std() > 0.01  # not a blank canvas


def test_the_recommendation_goes_across_runtimes(tmp_path):
    """With an OpenVINO variant faster than ORT's within 1 % of the best score, the report ships it and names its
    runtime; ORT's variants stay on the same front."""
    write_report(tmp_path / "bench", _sample_results(providers=("cpu",), openvino=True))
    md = (tmp_path / "bench" / "results.md").read_text()
    ship = md[md.index("## Which model to ship"):md.index("\n## cpu\n")]
    assert "ship **student-openvino-int8** on OpenVINO (accuracy 0.8450" in ship
    assert "Pareto front: student-openvino-int8 (" in ship and "student-int8-qat (" in ship


def test_write_report_produces_every_file(tmp_path):
    results = _sample_results()
    written = write_report(tmp_path / "bench", results)
    names = {"results.json", "results.csv", "results.md", "latency_vs_accuracy.png", "per_language.png",
             "throughput_vs_batch.png"}
    assert {p.name for p in written.values()} == names
    assert {p.name for p in (tmp_path / "bench").iterdir()} == names  # no temporary files left behind

    loaded = json.loads((tmp_path / "bench" / "results.json").read_text())
    validate_results(loaded)
    assert loaded["schema_version"] == 1 and loaded == json.loads(json.dumps(results))

    with open(tmp_path / "bench" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(results["timings"])
    first = table[0]
    assert first["variant"] == "teacher" and first["precision"] == "fp32" and float(first["p50_ms"]) > 0
    # headline metric per task = its first overall row: xnli → accuracy (not macro_f1), sts → spearman
    assert headline_metrics(results) == {"xnli": "accuracy", "sts": "spearman"}
    assert float(first["xnli:accuracy"]) == pytest.approx(0.85) and "xnli:macro_f1" not in first
    assert reference_shapes(results) == {"cpu": (1, 128), "cuda": (1, 128)}

    md = (tmp_path / "bench" / "results.md").read_text()
    assert md.index("## Which model to ship") < md.index("\n## cpu\n") < md.index("\n## cuda\n")
    ship = md[md.index("## Which model to ship"):md.index("\n## cpu\n")]
    # the fastest variant within 1 % of the best accuracy (0.85 ≥ 0.846 ≥ 0.8415): the QAT student
    assert "ship **student-int8-qat** on ONNX Runtime (accuracy 0.8460" in ship and "best 0.8500" in ship
    assert "Pareto front: student-int8 (" in ship  # fastest first
    cpu = ship[:ship.index("### cuda")]
    budgets = [line for line in cpu.splitlines() if line.startswith("| ≤ ")]
    # one budget per variant's own p50, fastest first; under each the best-scoring variant that fits
    assert [row.split(" | ")[1].split(" (")[0] for row in budgets] == [
        "student-int8", "student-int8-qat", "student-int8-qat", "teacher"]
    for plot in ("latency_vs_accuracy.png", "per_language.png", "throughput_vs_batch.png"):
        assert f"]({plot})" in md
    assert "| variant | precision | size MB | params |" in md and "b8×128 p50 / p90 ms" in md
    assert "### xnli (accuracy)" in md and "| variant | en | de | zh | overall |" in md
    assert "AMD" in md or "CPU:" in md
    for plot in ("latency_vs_accuracy", "per_language", "throughput_vs_batch"):
        _check_png(written[plot])


def test_report_without_scores(tmp_path):
    out = tmp_path / "bench"
    write_report(out, _sample_results())
    written = write_report(out, _sample_results(scores=False, providers=("cpu",)))  # rewritten in place
    assert "latency_vs_accuracy" not in written and not (out / "latency_vs_accuracy.png").exists()
    assert not (out / "per_language.png").exists()
    _check_png(written["throughput_vs_batch"])
    md = (out / "results.md").read_text()
    assert "## Which model to ship" in md and "No accuracy scores" in md and "**student-int8** " in md
    assert "latency_vs_accuracy.png" not in md


def _mutations():
    def drop(key):
        return lambda r: r.pop(key)

    def set_(path, value):
        def apply(r):
            target = r
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return apply

    return {
        "missing top key": (drop("timings"), "missing key(s) timings"),
        "schema version": (set_(["schema_version"], 2), "schema_version"),
        "created": (set_(["created"], "yesterday"), "created"),
        "unknown provider": (set_(["settings", "providers"], ["tpu"]), "settings.providers"),
        "duplicate variant": (lambda r: r["variants"].append(dict(r["variants"][0])), "appears twice"),
        "precision": (set_(["variants", 1, "precision"], "int4"), "variants[1].precision"),
        "negative size": (set_(["variants", 0, "size_bytes"], -1), "variants[0].size_bytes"),
        "unknown variant": (set_(["timings", 3, "variant"], "ghost"), "timings[3].variant"),
        "provider not benchmarked": (set_(["timings", 0, "provider"], "tensorrt"), "timings[0].provider"),
        "string latency": (set_(["timings", 2, "p50_ms"], "fast"), "timings[2].p50_ms"),
        "bool batch": (set_(["timings", 0, "batch"], True), "timings[0].batch"),
        "missing stat": (lambda r: r["timings"][1].pop("p99_ms"), "timings[1]: missing key(s) p99_ms"),
        "percentiles out of order": (set_(["timings", 0, "p90_ms"], 0.0), "timings[0]: latencies out of order"),
        "duplicate timing": (lambda r: r["timings"].append(dict(r["timings"][0])), "a second timing"),
        "nan score": (set_(["scores", 0, "value"], float("nan")), "scores[0].value"),
        "empty language": (set_(["scores", 0, "language"], ""), "scores[0].language"),
        "not a dict": (lambda r: r.clear() or r.update({"x": 1}), "missing key(s)"),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_validator_names_the_first_problem(case):
    mutate, expected = _mutations()[case]
    results = json.loads(json.dumps(_sample_results()))
    validate_results(results)
    mutate(results)
    with pytest.raises(ValueError) as err:
        validate_results(results)
    assert expected in str(err.value)


def test_writer_refuses_invalid_results(tmp_path):
    results = _sample_results()
    results["timings"][0]["variant"] = "ghost"
    with pytest.raises(ValueError, match="timings\\[0\\].variant"):
        write_report(tmp_path / "bench", results)
    assert not (tmp_path / "bench").exists() or not any((tmp_path / "bench").iterdir())
    with pytest.raises(ValueError):
        validate_results([])


# --- the torch-free rule and the machine facts ---------------------------------------------------------

def test_bench_core_imports_no_torch():
    code = ("import sys, bench.timing, bench.ort_session, bench.machine, bench.pareto, bench.report\n"
            "from bench.machine import machine_facts\n"
            "facts = machine_facts(3)\n"
            "assert facts['threads'] == 3 and facts['logical_cores'] >= 1, facts\n"
            "assert 'onnxruntime' in facts['versions'] and 'numpy' in facts['versions'], facts['versions']\n"
            "assert 'CPUExecutionProvider' in facts['ort_providers'] and isinstance(facts['gpus'], list)\n"
            "assert set(facts['isa']) >= {'avx512_vnni', 'amx_int8', 'vnni'}\n"
            "bad = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
