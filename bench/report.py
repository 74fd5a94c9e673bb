"""``compress bench``'s results: the schema (checked by :func:`validate_results`), and the files written from it.

:func:`write_report` writes into one folder, each file atomically:

* ``results.json``: the results themselves (schema below and in docs/bench-results-schema.md);
* ``results.csv``: one row per timing, joined with its variant's facts and headline score per task;
* ``results.md``: "Which model to ship" first, then one table per provider, per-language scores, settings,
  the machine, and links to the plots;
* ``latency_vs_accuracy.png``, ``per_language.png``, ``throughput_vs_batch.png``: each only when it has data.

Schema (version 1)::

    {"schema_version": 1, "created": ISO-8601 time, "machine": {...bench.machine.machine_facts...},
     "settings": {"providers": [...], "batch_sizes": [...], "seq_lengths": [...], "threads": int | null,
                  "warmup": int, "min_time_s": float, ...},
     "variants": [{"name", "run", "path", "format": "onnx"|"openvino"|"torch",
                   "precision": "fp32"|"fp16"|"bf16"|"int8"|"int8-qat", "size_bytes", "parameters"}],
     "timings":  [{"variant", "provider", "batch", "seq_len", "threads", <TimingStats fields>,
                   "sequences_per_s", "tokens_per_s"}],
     "scores":   [{"variant", "task", "metric", "language": str | null (null: overall), "value"}]}

Rows may carry further keys (e.g. ``providers_used`` in a timing row); they are kept in results.json and ignored
by the checks and the other files.

Conventions the report relies on:

* A higher score is better, for every metric.
* A task's *headline metric* is the metric of its first overall (``language`` null) row in ``scores``: write the
  headline row of each task first. A task with only per-language rows has no headline.
* The *reference shape* of a provider is its smallest measured batch and its largest measured sequence length
  (batch 1 × the longest input, a typical online request); "Which model to ship" and the latency axis of
  ``latency_vs_accuracy.png`` use the p50 latency at that shape.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.pareto import best_under_budget, pareto_front
from bench.timing import FIELDS as TIMING_FIELDS
from bench.timing import TimingStats, throughput
from compress.run_dir import atomic_write_bytes, atomic_write_text

__all__ = ["SCHEMA_VERSION", "FORMATS", "PRECISIONS", "PROVIDER_NAMES", "NEAR_BEST", "validate_results",
           "make_results", "timing_row", "headline_metrics", "headline_scores", "reference_shapes", "write_report", "load_results"]

SCHEMA_VERSION = 1
FORMATS = ("onnx", "openvino", "torch")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-qat")
PROVIDER_NAMES = ("cpu", "cuda", "tensorrt")
RUNTIME_NAMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "torch": "PyTorch"}
NEAR_BEST = 0.01  # "ship" answer: the fastest variant within 1 % (relative) of the best score
PLOTS = {"latency_vs_accuracy": "latency_vs_accuracy.png", "per_language": "per_language.png",
         "throughput_vs_batch": "throughput_vs_batch.png"}
_TOP_KEYS = ("schema_version", "created", "machine", "settings", "variants", "timings", "scores")
_VARIANT_COLUMNS = ("name", "run", "path", "format", "precision", "size_bytes", "parameters")
_TIMING_KEYS = ("variant", "provider", "batch", "seq_len", "threads", *TIMING_FIELDS, "sequences_per_s", "tokens_per_s")


# ---------------------------------------------------------------- building rows


def timing_row(variant: str, provider: str, batch: int, seq_len: int, threads: int | None, stats: TimingStats,
               **extra: Any) -> dict[str, Any]:
    """One ``timings`` row: identity, the TimingStats fields and the throughput; ``extra`` keys are appended."""
    return {"variant": variant, "provider": provider, "batch": batch, "seq_len": seq_len, "threads": threads,
            **stats.as_dict(), **throughput(stats, batch, seq_len), **extra}


def make_results(*, machine: Mapping[str, Any], settings: Mapping[str, Any], variants: Sequence[Mapping[str, Any]],
                 timings: Sequence[Mapping[str, Any]] = (), scores: Sequence[Mapping[str, Any]] = (),
                 created: str | None = None) -> dict[str, Any]:
    """A results dict with the schema version and creation time filled in (validated)."""
    results = {"schema_version": SCHEMA_VERSION,
               "created": created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": dict(machine), "settings": dict(settings), "variants": [dict(v) for v in variants],
               "timings": [dict(t) for t in timings], "scores": [dict(s) for s in scores]}
    validate_results(results)
    return results


# ---------------------------------------------------------------- validation


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fail(where: str, expected: str, value: Any) -> None:
    shown = repr(value)
    raise ValueError(f"{where}: expected {expected}, got {shown[:80] + '...' if len(shown) > 80 else shown}")


def _check(ok: bool, where: str, expected: str, value: Any) -> None:
    if not ok:
        _fail(where, expected, value)


def _check_row(row: Any, where: str, keys: Sequence[str]) -> None:
    _check(isinstance(row, dict), where, "an object", row)
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")


def _nonempty_str(x: Any) -> bool:
    return isinstance(x, str) and bool(x.strip())


def validate_results(results: Any) -> None:
    """Raise ValueError naming the first problem (with its place, e.g. ``timings[3].p50_ms``); None when valid."""
    _check(isinstance(results, dict), "results", "an object", results)
    missing = [k for k in _TOP_KEYS if k not in results]
    if missing:
        raise ValueError(f"results: missing key(s) {', '.join(missing)}")
    _check(results["schema_version"] == SCHEMA_VERSION and _is_int(results["schema_version"]), "schema_version",
           str(SCHEMA_VERSION), results["schema_version"])
    created = results["created"]
    _check(isinstance(created, str), "created", "an ISO-8601 time string", created)
    try:
        dt.datetime.fromisoformat(created)
    except ValueError:
        _fail("created", "an ISO-8601 time string", created)
    _check(isinstance(results["machine"], dict), "machine", "an object", results["machine"])

    settings = results["settings"]
    _check_row(settings, "settings", ("providers", "batch_sizes", "seq_lengths", "threads", "warmup", "min_time_s"))
    providers = settings["providers"]
    _check(isinstance(providers, list) and bool(providers) and all(p in PROVIDER_NAMES for p in providers),
           "settings.providers", f"a non-empty list of {', '.join(PROVIDER_NAMES)}", providers)
    for key in ("batch_sizes", "seq_lengths"):
        value = settings[key]
        _check(isinstance(value, list) and bool(value) and all(_is_int(v) and v >= 1 for v in value),
               f"settings.{key}", "a non-empty list of integers >= 1", value)
    _check(settings["threads"] is None or (_is_int(settings["threads"]) and settings["threads"] >= 1),
           "settings.threads", "an integer >= 1 or null", settings["threads"])
    _check(_is_int(settings["warmup"]) and settings["warmup"] >= 0, "settings.warmup", "an integer >= 0",
           settings["warmup"])
    _check(_is_number(settings["min_time_s"]) and settings["min_time_s"] >= 0, "settings.min_time_s",
           "a number >= 0", settings["min_time_s"])

    variants = results["variants"]
    _check(isinstance(variants, list) and bool(variants), "variants", "a non-empty list", variants)
    names: set[str] = set()
    for i, v in enumerate(variants):
        where = f"variants[{i}]"
        _check_row(v, where, _VARIANT_COLUMNS)
        _check(_nonempty_str(v["name"]), f"{where}.name", "a non-empty string", v["name"])
        if v["name"] in names:
            raise ValueError(f"{where}.name: variant '{v['name']}' appears twice")
        names.add(v["name"])
        _check(v["run"] is None or isinstance(v["run"], str), f"{where}.run", "a string or null", v["run"])
        _check(_nonempty_str(v["path"]), f"{where}.path", "a non-empty string", v["path"])
        _check(v["format"] in FORMATS, f"{where}.format", " or ".join(FORMATS), v["format"])
        _check(v["precision"] in PRECISIONS, f"{where}.precision", ", ".join(PRECISIONS), v["precision"])
        for key in ("size_bytes", "parameters"):
            _check(v[key] is None or (_is_int(v[key]) and v[key] >= 0), f"{where}.{key}", "an integer >= 0 or null",
                   v[key])

    timings = results["timings"]
    _check(isinstance(timings, list), "timings", "a list", timings)
    seen: set[tuple] = set()
    for i, t in enumerate(timings):
        where = f"timings[{i}]"
        _check_row(t, where, _TIMING_KEYS)
        _check(t["variant"] in names, f"{where}.variant", "the name of a listed variant", t["variant"])
        _check(t["provider"] in settings["providers"], f"{where}.provider",
               f"one of settings.providers ({', '.join(settings['providers'])})", t["provider"])
        for key in ("batch", "seq_len", "runs"):
            _check(_is_int(t[key]) and t[key] >= 1, f"{where}.{key}", "an integer >= 1", t[key])
        _check(t["threads"] is None or (_is_int(t["threads"]) and t["threads"] >= 1), f"{where}.threads",
               "an integer >= 1 or null", t["threads"])
        for key in TIMING_FIELDS[1:]:
            _check(_is_number(t[key]) and t[key] >= 0, f"{where}.{key}", "a finite number >= 0", t[key])
        for key in ("sequences_per_s", "tokens_per_s"):
            _check(_is_number(t[key]) and t[key] > 0, f"{where}.{key}", "a finite number > 0", t[key])
        order = [t["min_ms"], t["p50_ms"], t["p90_ms"], t["p99_ms"], t["max_ms"]]
        slack = 1e-9 * max(1.0, t["max_ms"])
        if any(a > b + slack for a, b in zip(order, order[1:])) or not t["min_ms"] - slack <= t["mean_ms"] <= t["max_ms"] + slack:
            raise ValueError(f"{where}: latencies out of order (need min <= p50 <= p90 <= p99 <= max and "
                             f"min <= mean <= max): {order}, mean {t['mean_ms']}")
        key = (t["variant"], t["provider"], t["batch"], t["seq_len"], t["threads"])
        if key in seen:
            raise ValueError(f"{where}: a second timing of {t['variant']} on {t['provider']} at batch {t['batch']} × "
                             f"{t['seq_len']} with {t['threads']} threads")
        seen.add(key)

    scores = results["scores"]
    _check(isinstance(scores, list), "scores", "a list", scores)
    seen = set()
    for i, s in enumerate(scores):
        where = f"scores[{i}]"
        _check_row(s, where, ("variant", "task", "metric", "language", "value"))
        _check(s["variant"] in names, f"{where}.variant", "the name of a listed variant", s["variant"])
        for key in ("task", "metric"):
            _check(_nonempty_str(s[key]), f"{where}.{key}", "a non-empty string", s[key])
        _check(s["language"] is None or _nonempty_str(s["language"]), f"{where}.language",
               "a non-empty string or null (overall)", s["language"])
        _check(_is_number(s["value"]), f"{where}.value", "a finite number", s["value"])
        key = (s["variant"], s["task"], s["metric"], s["language"])
        if key in seen:
            raise ValueError(f"{where}: a second {s['task']}/{s['metric']} score of {s['variant']} "
                             f"for language {s['language']}")
        seen.add(key)


def load_results(path: Path | str) -> dict[str, Any]:
    """Read and validate a results.json."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    validate_results(results)
    return results


# ---------------------------------------------------------------- derived views


def headline_metrics(results: Mapping[str, Any]) -> dict[str, str]:
    """{task: metric of its first overall score row}, tasks in order of appearance."""
    out: dict[str, str] = {}
    for s in results["scores"]:
        if s["language"] is None and s["task"] not in out:
            out[s["task"]] = s["metric"]
    return out


def headline_scores(results: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """{(variant, task): headline value}."""
    metrics = headline_metrics(results)
    return {(s["variant"], s["task"]): s["value"] for s in results["scores"]
            if s["language"] is None and metrics.get(s["task"]) == s["metric"]}


def reference_shapes(results: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """{provider: (smallest batch, largest seq_len) among its timings}."""
    shapes: dict[str, tuple[int, int]] = {}
    for t in results["timings"]:
        b, s = shapes.get(t["provider"], (t["batch"], t["seq_len"]))
        shapes[t["provider"]] = (min(b, t["batch"]), max(s, t["seq_len"]))
    return shapes


def _reference_latencies(results: Mapping[str, Any], provider: str, shape: tuple[int, int]) -> dict[str, float]:
    """{variant: p50 ms at the provider's reference shape} (first row when several thread counts)."""
    out: dict[str, float] = {}
    for t in results["timings"]:
        if t["provider"] == provider and (t["batch"], t["seq_len"]) == shape:
            out.setdefault(t["variant"], t["p50_ms"])
    return out


def _ms(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _score(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


def _count(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------- results.md


def _ship_section(results: Mapping[str, Any]) -> list[str]:
    lines = ["## Which model to ship", ""]
    shapes = reference_shapes(results)
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    runtime = {v["name"]: RUNTIME_NAMES.get(v["format"], v["format"]) for v in results["variants"]}
    if not shapes:
        return lines + ["No timings in these results: nothing to compare.", ""]
    lines += [f"Latency is the median (p50) of one call at the reference shape (smallest batch × longest input); "
              f"scores are each task's headline metric (higher is better). \"Ship\" names the fastest variant "
              f"within {100 * NEAR_BEST:g} % (relative) of the best score.", ""]
    for provider, (batch, seq) in shapes.items():
        latency = _reference_latencies(results, provider, (batch, seq))
        threads = next((t["threads"] for t in results["timings"] if t["provider"] == provider), None)
        lines += [f"### {provider}: batch {batch} × {seq} tokens, "
                  f"{threads if threads is not None else 'default'} threads", ""]
        if not metrics:
            ranked = sorted(latency, key=latency.get)
            lines += ["No accuracy scores in these results; the variants by p50 latency: "
                      + ", ".join(f"**{v}** {_ms(latency[v])} ms" if i == 0 else f"{v} {_ms(latency[v])} ms"
                                  for i, v in enumerate(ranked)) + ".", ""]
            continue
        for task, metric in metrics.items():
            rows = [{"variant": v, "p50": latency[v], "score": headline[(v, task)]}
                    for v in latency if (v, task) in headline]
            if not rows:
                lines.append(f"- **{task}** ({metric}): no variant with a score was timed on {provider}.")
                continue
            best = max(r["score"] for r in rows)
            near = [r for r in rows if r["score"] >= best - NEAR_BEST * abs(best)]
            ship = min(near, key=lambda r: (r["p50"], -r["score"]))
            front = pareto_front([(r["p50"], r["score"]) for r in rows])
            lines.append(f"- **{task}** ({metric}): ship **{ship['variant']}** on {runtime.get(ship['variant'], '?')} "
                         f"({metric} {_score(ship['score'])}, "
                         f"p50 {_ms(ship['p50'])} ms; best {_score(best)}). Pareto front: "
                         + " → ".join(f"{rows[i]['variant']} ({_ms(rows[i]['p50'])} ms, {_score(rows[i]['score'])})"
                                      for i in front) + ".")
        lines.append("")
        budgets = sorted({latency[v] for v in latency if any((v, task) in headline for task in metrics)})
        table = []
        for budget in budgets:
            row = [f"≤ {_ms(budget)} ms"]
            for task in metrics:
                rows = [{"variant": v, "p50": latency[v], "score": headline[(v, task)]}
                        for v in latency if (v, task) in headline]
                best = best_under_budget(rows, "p50", "score", budget)
                row.append("–" if best is None else f"{best['variant']} ({_score(best['score'])}, {_ms(best['p50'])} ms)")
            table.append(row)
        lines += ["Best variant under each latency budget:", ""]
        lines += _table(["p50 budget", *(f"{task} ({metric})" for task, metric in metrics.items())], table)
        lines.append("")
    return lines


def _provider_tables(results: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    variants = {v["name"]: v for v in results["variants"]}
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    providers = list(dict.fromkeys(t["provider"] for t in results["timings"]))
    for provider in providers:
        rows = [t for t in results["timings"] if t["provider"] == provider]
        shapes = sorted({(t["batch"], t["seq_len"]) for t in rows})
        by_key = {}
        for t in rows:
            by_key.setdefault((t["variant"], t["batch"], t["seq_len"]), t)
        header = ["variant", "precision", "size MB", "params",
                  *(f"b{b}×{s} p50 / p90 ms" for b, s in shapes), "max seq/s",
                  *(f"{task} ({metric})" for task, metric in metrics.items())]
        table = []
        for name in dict.fromkeys(t["variant"] for t in rows):
            v = variants[name]
            best = max((t for t in rows if t["variant"] == name), key=lambda t: t["sequences_per_s"])
            cells = [name + (" (torch)" if v["format"] == "torch" else ""), v["precision"],
                     "–" if v["size_bytes"] is None else f"{v['size_bytes'] / 1e6:.1f}",
                     "–" if v["parameters"] is None else f"{v['parameters'] / 1e6:.2f} M"]
            for b, s in shapes:
                t = by_key.get((name, b, s))
                cells.append("–" if t is None else f"{_ms(t['p50_ms'])} / {_ms(t['p90_ms'])}")
            cells.append(f"{_count(best['sequences_per_s'])} (b{best['batch']}×{best['seq_len']})")
            cells += [_score(headline.get((name, task))) for task in metrics]
            table.append(cells)
        lines += [f"## {provider}", ""] + _table(header, table) + [""]
    return lines


def _language_tables(results: Mapping[str, Any]) -> list[str]:
    pairs = list(dict.fromkeys((s["task"], s["metric"]) for s in results["scores"] if s["language"] is not None))
    if not pairs:
        return []
    lines = ["## Scores per language", ""]
    for task, metric in pairs:
        rows = [s for s in results["scores"] if (s["task"], s["metric"]) == (task, metric)]
        languages = list(dict.fromkeys(s["language"] for s in rows if s["language"] is not None))
        values = {(s["variant"], s["language"]): s["value"] for s in rows}
        has_overall = any(s["language"] is None for s in rows)
        header = ["variant", *languages] + (["overall"] if has_overall else [])
        table = [[v, *(_score(values.get((v, lang))) for lang in languages)]
                 + ([_score(values.get((v, None)))] if has_overall else [])
                 for v in dict.fromkeys(s["variant"] for s in rows)]
        lines += [f"### {task} ({metric})", ""] + _table(header, table) + [""]
    return lines


def _machine_section(results: Mapping[str, Any]) -> list[str]:
    m, s = results["machine"], results["settings"]
    lines = ["## Settings and machine", "",
             f"- Providers {', '.join(s['providers'])}; batch sizes {', '.join(map(str, s['batch_sizes']))}; "
             f"sequence lengths {', '.join(map(str, s['seq_lengths']))}; "
             f"threads {s['threads'] if s['threads'] is not None else 'default'}; warm-up {s['warmup']} calls; "
             f"at least {s['min_time_s']:g} s" + (f" and {s['min_runs']} calls" if "min_runs" in s else "")
             + " per measurement"
             + (f", in {s['rounds']} alternating rounds over all variants." if s.get("rounds", 1) > 1 else ".")]
    if m.get("cpu"):
        cores = f"{m.get('physical_cores', '?')} physical / {m.get('logical_cores', '?')} logical cores"
        if m.get("usable_cpus") not in (None, m.get("logical_cores")):
            cores += f", {m['usable_cpus']} usable"
        if m.get("cpu_quota") is not None:
            cores += f", cgroup quota {m['cpu_quota']:g} CPUs"
        lines.append(f"- CPU: {m['cpu']} ({m.get('arch', '?')}), {cores}.")
    isa = m.get("isa")
    if isinstance(isa, dict):
        lines.append(f"- Instruction sets: {', '.join(k for k, v in isa.items() if v) or 'none of note'}.")
    gpus = m.get("gpus")
    if gpus:
        lines.append("- GPU: " + "; ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in gpus) + ".")
    if m.get("ort_providers"):
        lines.append(f"- ONNX Runtime providers available: {', '.join(m['ort_providers'])}.")
    if m.get("os"):
        lines.append(f"- OS: {m['os']}.")
    versions = m.get("versions")
    if isinstance(versions, dict):
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    known = {"cpu", "arch", "physical_cores", "logical_cores", "usable_cpus", "cpu_quota", "threads", "isa", "gpus",
             "ort_providers", "os", "versions"}
    for key, value in m.items():
        if key not in known and value not in (None, [], {}):
            lines.append(f"- {key}: {value}")
    return lines + [""]


def _markdown(results: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    lines = ["# Benchmark results", "",
             f"Created {results['created']}; {len(results['variants'])} variant(s), {len(results['timings'])} "
             f"timing(s), {len(results['scores'])} score(s). Full data: [results.json](results.json), "
             f"[results.csv](results.csv).", ""]
    lines += _ship_section(results)
    lines += _provider_tables(results)
    lines += _language_tables(results)
    lines += _machine_section(results)
    if plots:
        titles = {"latency_vs_accuracy": "Latency against accuracy", "per_language": "Scores per language",
                  "throughput_vs_batch": "Throughput against batch size"}
        lines += ["## Plots", ""]
        for key, path in plots.items():
            lines += [f"### {titles[key]}", "", f"![{titles[key]}]({path.name})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- results.csv


def _csv(results: Mapping[str, Any]) -> str:
    variants = {v["name"]: v for v in results["variants"]}
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    score_columns = [f"{task}:{metric}" for task, metric in metrics.items()]
    header = ["variant", "run", "path", "format", "precision", "size_bytes", "parameters", "provider", "batch",
              "seq_len", "threads", *TIMING_FIELDS, "sequences_per_s", "tokens_per_s", *score_columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for t in results["timings"]:
        v = variants[t["variant"]]
        writer.writerow([t["variant"], v["run"], v["path"], v["format"], v["precision"], v["size_bytes"],
                         v["parameters"], t["provider"], t["batch"], t["seq_len"], t["threads"],
                         *(t[k] for k in TIMING_FIELDS), t["sequences_per_s"], t["tokens_per_s"],
                         *(headline.get((t["variant"], task), "") for task in metrics)])
    return buf.getvalue()


# ---------------------------------------------------------------- plots


def _new_figure(panels: int, width: float = 5.5, height: float = 4.2, max_cols: int = 3):
    """A matplotlib Figure drawn by the Agg canvas (no pyplot, no global backend switch) and its axes list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(panels, max_cols)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def _plot_latency_vs_accuracy(results: Mapping[str, Any]) -> bytes | None:
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    shapes = reference_shapes(results)
    if not metrics or not shapes:
        return None
    panels = [(task, metric) for task, metric in metrics.items()
              if any((v, task) in headline for p, shape in shapes.items() for v in _reference_latencies(results, p, shape))]
    if not panels:
        return None
    fig, axes = _new_figure(len(panels))
    colors = [f"C{i}" for i in range(10)]
    for ax, (task, metric) in zip(axes, panels):
        latencies = []
        for k, (provider, shape) in enumerate(shapes.items()):
            latency = _reference_latencies(results, provider, shape)
            names = [v for v in latency if (v, task) in headline]
            if not names:
                continue
            points = [(latency[v], headline[(v, task)]) for v in names]
            latencies += [p[0] for p in points]
            color = colors[k % len(colors)]
            ax.scatter([p[0] for p in points], [p[1] for p in points], color=color, zorder=3,
                       label=f"{provider} (b{shape[0]}×{shape[1]})")
            front = pareto_front(points)
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color=color, linestyle="--",
                    drawstyle="steps-post", alpha=0.6, zorder=2)
            ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=160, facecolors="none",
                       edgecolors=color, linewidths=1.5, zorder=4,
                       label="Pareto front" if k == 0 else None)
            for (x, y), name in zip(points, names):
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if latencies and max(latencies) / max(min(latencies), 1e-12) > 20:
            from matplotlib.ticker import FormatStrFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_title(f"{task}: {metric} against latency")
        ax.set_xlabel("p50 latency (ms) at the reference shape")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _plot_per_language(results: Mapping[str, Any]) -> bytes | None:
    pairs = list(dict.fromkeys((s["task"], s["metric"]) for s in results["scores"] if s["language"] is not None))
    if not pairs:
        return None
    fig, axes = _new_figure(len(pairs), width=max(6.0, 1.0 + 0.9 * max(
        len({s["language"] for s in results["scores"] if (s["task"], s["metric"]) == p}) for p in pairs)), max_cols=1)
    for ax, (task, metric) in zip(axes, pairs):
        rows = [s for s in results["scores"] if (s["task"], s["metric"]) == (task, metric) and s["language"] is not None]
        languages = list(dict.fromkeys(s["language"] for s in rows))
        variants = list(dict.fromkeys(s["variant"] for s in rows))
        values = {(s["variant"], s["language"]): s["value"] for s in rows}
        width = 0.8 / len(variants)
        for j, variant in enumerate(variants):
            xs = [i - 0.4 + width * (j + 0.5) for i, lang in enumerate(languages) if (variant, lang) in values]
            ys = [values[(variant, lang)] for lang in languages if (variant, lang) in values]
            ax.bar(xs, ys, width=width, label=variant, color=f"C{j % 10}")
        ax.set_xticks(range(len(languages)), languages)
        ax.set_title(f"{task}: {metric} per language")
        ax.set_ylabel(metric)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncols=min(len(variants), 4), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    return _png(fig)


def _plot_throughput(results: Mapping[str, Any]) -> bytes | None:
    timings = results["timings"]
    if not timings:
        return None
    seq_lengths = sorted({t["seq_len"] for t in timings})
    fig, axes = _new_figure(len(seq_lengths))
    for ax, seq in zip(axes, seq_lengths):
        series: dict[tuple[str, str], dict[int, float]] = {}
        for t in timings:
            if t["seq_len"] == seq:
                series.setdefault((t["variant"], t["provider"]), {}).setdefault(t["batch"], t["sequences_per_s"])
        batches = sorted({b for points in series.values() for b in points})
        for k, ((variant, provider), points) in enumerate(series.items()):
            xs = sorted(points)
            ax.plot(xs, [points[b] for b in xs], marker="o", color=f"C{k % 10}", label=f"{variant} ({provider})")
        if len(batches) > 1 and batches[-1] / batches[0] >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_title(f"Throughput at {seq} tokens")
        ax.set_xlabel("batch size")
        ax.set_ylabel("sequences / s (from the mean latency)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


# ---------------------------------------------------------------- writer


def write_report(out_dir: Path | str, results: Mapping[str, Any]) -> dict[str, Path]:
    """Validate ``results`` and write results.json, results.csv, the plots that have data, and results.md into
    ``out_dir`` (each atomically). Returns {"json", "csv", "md", and each written plot's key: path}."""
    validate_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {"json": out / "results.json", "csv": out / "results.csv"}
    atomic_write_text(written["json"], json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(written["csv"], _csv(results))
    plots: dict[str, Path] = {}
    for key, draw in (("latency_vs_accuracy", _plot_latency_vs_accuracy), ("per_language", _plot_per_language),
                      ("throughput_vs_batch", _plot_throughput)):
        data = draw(results)
        path = out / PLOTS[key]
        if data is None:
            with contextlib.suppress(FileNotFoundError):  # a stale plot from an earlier run would mislead
                path.unlink()
            continue
        atomic_write_bytes(path, data)
        plots[key] = path
    written["md"] = out / "results.md"
    atomic_write_text(written["md"], _markdown(results, plots))
    return written | plots
