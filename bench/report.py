"""``compress bench``'s report: results.json, results.csv, results.md and the plots, written from one
:class:`bench.results.Results` (the schema, checked on write and on read) and its :func:`bench.recommend.recommend`.

:func:`write_report` writes into one folder, each file atomically:

* ``results.json``: the results themselves (docs/bench-results-schema.md), with the ``recommendation`` record;
* ``results.csv``: one row per timing, joined with its variant's facts and headline score per task;
* ``results.md``: "Which model to ship" first (rendered from the recommendation), then one table per provider
  (model-call and end-to-end latency), per-language scores, settings (the one thread count), the machine, plots;
* ``latency_vs_accuracy.png``, ``per_language.png``, ``throughput_vs_batch.png``: each only when it has data.

Rows may carry further keys (e.g. ``providers_used`` in a timing row); they are kept in results.json and ignored
by the other files. A higher score is better, for every metric.
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

from bench.pareto import pareto_front
from bench.recommend import NEAR_BEST, headline_metrics, headline_scores, recommend, reference_picks, reference_shapes
from bench.results import (FORMATS, PRECISIONS, PROVIDER_NAMES, SCHEMA_VERSION, Recommendation, Results, load_results,
                           parse_results, validate_results)
from bench.timing import FIELDS as TIMING_FIELDS
from bench.timing import TimingStats, throughput
from compress.run_dir import atomic_write_bytes, atomic_write_text

__all__ = ["SCHEMA_VERSION", "FORMATS", "PRECISIONS", "PROVIDER_NAMES", "NEAR_BEST", "validate_results",
           "make_results", "timing_row", "headline_metrics", "headline_scores", "reference_shapes", "recommend",
           "write_report", "load_results", "parse_results"]

RUNTIME_NAMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "torch": "PyTorch"}
PLOTS = {"latency_vs_accuracy": "latency_vs_accuracy.png", "per_language": "per_language.png",
         "throughput_vs_batch": "throughput_vs_batch.png"}
E2E_FIELDS = ("mean_ms", "p50_ms", "p90_ms", "p99_ms")  # the end-to-end columns of results.csv (prefixed e2e_)


# ---------------------------------------------------------------- building rows


def timing_row(variant: str, provider: str, batch: int, seq_len: int, threads: int | None, stats: TimingStats,
               end_to_end: TimingStats | None = None, **extra: Any) -> dict[str, Any]:
    """One ``timings`` row: identity, the model call's TimingStats fields and throughput, then ``end_to_end`` (the
    request from text to embedding, or None when not measured); ``extra`` keys are appended."""
    return {"variant": variant, "provider": provider, "batch": batch, "seq_len": seq_len, "threads": threads,
            **stats.as_dict(), **throughput(stats, batch, seq_len),
            "end_to_end": None if end_to_end is None else end_to_end.as_dict(), **extra}


def make_results(*, machine: Mapping[str, Any], settings: Mapping[str, Any], variants: Sequence[Mapping[str, Any]],
                 timings: Sequence[Mapping[str, Any]] = (), scores: Sequence[Mapping[str, Any]] = (),
                 created: str | None = None) -> dict[str, Any]:
    """A results dict as results.json holds it: checked through :class:`Results`, with the schema version, the
    creation time and the :func:`recommend` record filled in."""
    results = parse_results({
        "schema_version": SCHEMA_VERSION,
        "created": created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": dict(machine), "settings": dict(settings), "variants": [dict(v) for v in variants],
        "timings": [dict(t) for t in timings], "scores": [dict(s) for s in scores]})
    results.recommendation = recommend(results)
    return results.to_json()


# ---------------------------------------------------------------- formatting


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


def _runtime(pick) -> str:
    return RUNTIME_NAMES.get(pick.format, pick.format)


RANKED_BY = {"end_to_end": "Ranked by the end-to-end p50.",
             "model_call": "Ranked by the model call's p50 (no variant was timed end to end).",
             "mixed": "Ranked by the end-to-end p50; † a variant timed without it, ranked by its model call's p50."}


def _latency(pick, mixed: bool = False) -> str:
    """The latency a pick is ranked by (end to end where measured, else the model call; † in a mixed ranking)."""
    ms = pick.latency_ms if pick.latency_ms is not None else pick.p50_ms
    return f"{_ms(ms)} ms" + ("†" if mixed and pick.e2e_p50_ms is None else "")


def _both(pick) -> str:
    if pick.e2e_p50_ms is None:
        return f"model-call p50 {_ms(pick.p50_ms)} ms"
    return f"end-to-end p50 {_ms(pick.e2e_p50_ms)} ms, model call {_ms(pick.p50_ms)} ms"


def _ship_section(rec: Recommendation) -> list[str]:
    """results.md's "Which model to ship", rendered from the :func:`recommend` record (no decision made here)."""
    lines = ["## Which model to ship", ""]
    if not rec.providers:
        return lines + ["No timings in these results: nothing to compare.", ""]
    lines += [f"Latency is the median (p50) at the reference shape (smallest batch × longest input) of a request as a "
              f"user sends it, end to end: text in, tokenization, the model call, pooling, embedding out (the model "
              f"call alone beside it); scores are each task's headline metric (higher is better). \"Ship\" names the "
              f"fastest variant within {100 * rec.near_best:g} % (relative) of the best score.", ""]
    for choice in rec.providers:
        threads = choice.threads if choice.threads is not None else "default"
        mixed = choice.ranked_by == "mixed"
        lines += [f"### {choice.provider}: batch {choice.batch} × {choice.seq_len} tokens, {threads} threads", "",
                  RANKED_BY[choice.ranked_by], ""]
        if not choice.tasks:
            lines += ["No accuracy scores in these results; the variants by latency: "
                      + ", ".join(f"**{p.variant}** {_latency(p, mixed)}" if i == 0 else f"{p.variant} {_latency(p, mixed)}"
                                  for i, p in enumerate(choice.by_latency)) + ".", ""]
            continue
        for task in choice.tasks:
            ship = task.ship
            if ship is None:
                lines.append(f"- **{task.task}** ({task.metric}): no variant with a score was timed on {choice.provider}.")
                continue
            lines.append(f"- **{task.task}** ({task.metric}): ship **{ship.variant}** on {_runtime(ship)} "
                         f"({task.metric} {_score(ship.score)}, {_both(ship)}; "
                         f"best {_score(task.best_score)}). Pareto front: "
                         + " → ".join(f"{p.variant} ({_latency(p, mixed)}, {_score(p.score)})" for p in task.pareto_front)
                         + ".")
        lines.append("")
        if choice.budgets:
            table = [[f"≤ {_ms(b.p50_ms)} ms"]
                     + ["–" if b.best.get(t.task) is None else
                        f"{b.best[t.task].variant} ({_score(b.best[t.task].score)}, {_latency(b.best[t.task], mixed)})"
                        for t in choice.tasks] for b in choice.budgets]
            lines += ["Best variant under each latency budget:", ""]
            lines += _table(["latency budget", *(f"{t.task} ({t.metric})" for t in choice.tasks)], table)
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
        e2e = any(t.get("end_to_end") for t in rows)
        header = ["variant", "precision", "size MB", "params",
                  *(f"b{b}×{s} p50 / p90 ms" + (" (end-to-end p50)" if e2e else "") for b, s in shapes), "max seq/s",
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
                cell = "–" if t is None else f"{_ms(t['p50_ms'])} / {_ms(t['p90_ms'])}"
                if t is not None and e2e:
                    cell += f" ({_ms(t['end_to_end']['p50_ms'])})" if t.get("end_to_end") else " (–)"
                cells.append(cell)
            cells.append(f"{_count(best['sequences_per_s'])} (b{best['batch']}×{best['seq_len']})")
            cells += [_score(headline.get((name, task))) for task in metrics]
            table.append(cells)
        lines += [f"## {provider}", ""] + _table(header, table) + [""]
        if e2e:
            lines += ["Latency per call: the model call on ready token ids (p50 / p90), and in brackets the end-to-end "
                      "p50 of the same request as a user sends it: text in, tokenization, the model call, pooling "
                      "(and normalization where the model normalizes), embedding out on the host.", ""]
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


THREADS_FROM = {"bench.threads": "set by bench.threads / --threads", "physical cores": "the physical cores available"}


def _threads_line(settings: Mapping[str, Any]) -> str:
    """The thread count every runtime ran at, and where it came from (results.md's header)."""
    threads = settings.get("threads")
    if threads is None:  # results from before the count was always set
        return "Threads: each runtime's default."
    source = THREADS_FROM.get(settings.get("threads_from"), settings.get("threads_from"))
    return (f"Threads: every runtime ran at **{threads}** (ONNX Runtime intra-op threads, OpenVINO "
            f"INFERENCE_NUM_THREADS, torch.set_num_threads)" + (f", {source}." if source else "."))


def _machine_section(results: Mapping[str, Any]) -> list[str]:
    m, s = results["machine"], results["settings"]
    lines = ["## Settings and machine", "",
             f"- Providers {', '.join(s['providers'])}; batch sizes {', '.join(map(str, s['batch_sizes']))}; "
             f"sequence lengths {', '.join(map(str, s['seq_lengths']))}; "
             f"threads {s['threads'] if s['threads'] is not None else 'default'}; warm-up {s['warmup']} calls; "
             f"at least {s['min_time_s']:g} s" + (f" and {s['min_runs']} calls" if s.get("min_runs") is not None else "")
             + " per measurement"
             + (f", in {s['rounds']} alternating rounds over all variants." if (s.get("rounds") or 1) > 1 else ".")]
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
             f"[results.csv](results.csv).", "", _threads_line(results["settings"]), ""]
    lines += _ship_section(parse_results(results).recommendation or recommend(results))
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
              "seq_len", "threads", *TIMING_FIELDS, "sequences_per_s", "tokens_per_s",
              *(f"e2e_{k}" for k in E2E_FIELDS), *score_columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for t in results["timings"]:
        v = variants[t["variant"]]
        writer.writerow([t["variant"], v["run"], v["path"], v["format"], v["precision"], v["size_bytes"],
                         v["parameters"], t["provider"], t["batch"], t["seq_len"], t["threads"],
                         *(t[k] for k in TIMING_FIELDS), t["sequences_per_s"], t["tokens_per_s"],
                         *((t.get("end_to_end") or {}).get(k, "") for k in E2E_FIELDS),
                         *(headline.get((t["variant"], task), "") for task in metrics)])
    return buf.getvalue()


# ---------------------------------------------------------------- plots


def _new_figure(panels: int, width: float = 5.5, height: float = 4.2, max_cols: int = 3, layout: str | None = "constrained"):
    """A matplotlib Figure drawn by the Agg canvas (no pyplot, no global backend switch) and its axes list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(panels, max_cols)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout=layout, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _png(fig, tight: bool = False) -> bytes:
    """PNG bytes at the dpi labels were placed at; ``tight`` crops to the drawn artists (no re-layout)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, **({"bbox_inches": "tight"} if tight else {}))
    return buf.getvalue()


DPI = 110
LABEL_GID = "variant-label"  # the gid of a point's name on latency_vs_accuracy.png (tests find the labels by it)
# Where a point's name may go, tried in turn: (dx, dy) in points from the point, and the text's alignment there.
_LABEL_SPOTS = [(dx * r, dy * r, ha, va) for r in (1.0, 2.0, 3.2) for dx, dy, ha, va in (
    (5, 5, "left", "bottom"), (5, -5, "left", "top"), (-5, 5, "right", "bottom"), (-5, -5, "right", "top"),
    (0, 7, "center", "bottom"), (0, -7, "center", "top"), (7, 0, "left", "center"), (-7, 0, "right", "center"))]
_FALLBACK_MARKERS = ("^", "v", "s", "D", "P", "X", "*", "p", "h", "<", ">", "8", "d", "H")
_PANEL_H = 5.3  # inches per row of panels: the plot and, below it, the legend band
_MARKER_PT = 4.0  # half the size of another point's marker: a label may not cover it
_MERGE_PT = 6.0  # points closer than this (in points) cannot be told apart: one label names them all
_FALLBACK_GID = "variant-legend-marker"


def latency_accuracy_figure(results: Mapping[str, Any] | Results):
    """The latency_vs_accuracy Figure (one panel per task with scores: headline score against the latency the
    recommendation ranks by at each provider's reference shape, the end-to-end p50 where measured, with the model
    call's p50 as a thin segment to its left; the recommendation's Pareto front ringed), or None without data.

    Every point is named either by a label beside it that overlaps no other label, no other point and no panel edge
    (measured with the renderer's text extents), or, where none fits, by its own marker in the legend."""
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    shapes = reference_shapes(results)
    if not metrics or not shapes:
        return None
    picks = {provider: reference_picks(results, provider, shape) for provider, shape in shapes.items()}
    panels = [(task, metric) for task, metric in metrics.items()
              if any((v, task) in headline for found in picks.values() for v in found)]
    if not panels:
        return None
    # A fixed geometry (no constrained layout): the panels do not move once drawn, so the labels are placed once
    # against the final positions; the legend sits in the band below each panel.
    fig, axes = _new_figure(len(panels), height=_PANEL_H, layout=None)
    width, height = fig.get_size_inches()
    rows = math.ceil(len(panels) / 3)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.25 / width, top=1 - 0.45 / height, bottom=1.7 / height,
                        wspace=0.3, hspace=2.15 / (_PANEL_H - 2.15) if rows > 1 else 0.2)
    colors = [f"C{i}" for i in range(10)]
    named: list[tuple[Any, list[tuple[float, float, str, str]]]] = []  # per panel: (x, y, name, colour)
    for ax, (task, metric) in zip(axes, panels):
        latencies, points_of_panel = [], []
        for k, (provider, shape) in enumerate(shapes.items()):
            names = [v for v in picks[provider] if (v, task) in headline]
            if not names:
                continue
            points = [(picks[provider][v].latency_ms, headline[(v, task)]) for v in names]
            model = [(picks[provider][v].p50_ms, headline[(v, task)]) for v in names
                     if picks[provider][v].e2e_p50_ms is not None]
            latencies += [p[0] for p in points] + [p[0] for p in model]
            color = colors[k % len(colors)]
            ax.scatter([p[0] for p in points], [p[1] for p in points], color=color, zorder=3,
                       label=f"{provider} (b{shape[0]}×{shape[1]})")
            if model:
                e2e = [picks[provider][v].e2e_p50_ms for v in names if picks[provider][v].e2e_p50_ms is not None]
                ax.hlines([p[1] for p in model], [p[0] for p in model], e2e, color=color, alpha=0.45, linewidth=1.2,
                          zorder=1, label="model call alone (token ids in)" if k == 0 else None)
                ax.scatter([p[0] for p in model], [p[1] for p in model], marker="|", color=color, s=50, alpha=0.8,
                           zorder=1)
            front = pareto_front(points)
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color=color, linestyle="--",
                    drawstyle="steps-post", alpha=0.6, zorder=2)
            ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=160, facecolors="none",
                       edgecolors=color, linewidths=1.5, zorder=4,
                       label="Pareto front" if k == 0 else None)
            points_of_panel += [(x, y, name, color) for (x, y), name in zip(points, names)]
        if latencies and max(latencies) / max(min(latencies), 1e-12) > 20:
            from matplotlib.ticker import FormatStrFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_title(f"{task}: {metric} against latency")
        ax.set_xlabel("p50 latency (ms) at the reference shape, end to end where measured")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.08, y=0.12)  # room for labels at the edges
        named.append((ax, points_of_panel))
    _place_labels(fig, named)
    return fig


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3,
              frameon=False)  # in the band below the panel: never over a label or a point


def _groups(where, radius: float) -> list[list[int]]:
    """Indices of points (display coordinates) closer than ``radius`` to one another, transitively: points a reader
    cannot tell apart, named together. Each group in the order of its first point."""
    parent = list(range(len(where)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(where)):
        for j in range(i):
            if (where[i][0] - where[j][0]) ** 2 + (where[i][1] - where[j][1]) ** 2 < radius**2:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(where)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _place_labels(fig, panels: list[tuple[Any, list[tuple[float, float, str, str]]]]) -> None:
    """Name the points of each panel ``(ax, [(x, y, name, colour)])``, on a figure whose panels no longer move.

    Points that sit on one another (closer than ``_MERGE_PT``) share one label, their names one per line, best score
    first. A label takes the first spot of ``_LABEL_SPOTS`` whose text box (renderer extents, 1 pt apart) stays inside
    the panel and clear of the labels placed so far and of the other points; a group with no such spot gets a marker
    of its own, with its names in the legend below the panel."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()  # limits, scales and panel positions final
    renderer = fig.canvas.get_renderer()
    pt = fig.dpi / 72.0
    for ax, points in panels:
        ax.set_xlim(ax.get_xlim())  # frozen: the markers added below must not rescale the panel
        ax.set_ylim(ax.get_ylim())
        area = ax.get_window_extent(renderer)
        where = ax.transData.transform([(x, y) for x, y, _, _ in points]) if points else []
        r = _MARKER_PT * pt
        markers = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in where]
        placed: list[Any] = []
        in_legend = 0
        for group in _groups(where, _MERGE_PT * pt):
            group = sorted(group, key=lambda j: -points[j][1])
            others = [m for k, m in enumerate(markers) if k not in group]
            x, y, _, color = points[group[0]]
            for dx, dy, ha, va in _LABEL_SPOTS:
                text = ax.annotate("\n".join(points[j][2] for j in group), (x, y), xytext=(dx, dy),
                                   textcoords="offset points", ha=ha, va=va, fontsize=8, gid=LABEL_GID)
                text.set_in_layout(False)
                box = text.get_window_extent(renderer).padded(pt)
                if (area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
                        and not any(box.overlaps(o) for o in placed + others)):
                    placed.append(box)
                    break
                text.remove()
            else:
                ax.scatter([x], [y], marker=_FALLBACK_MARKERS[in_legend % len(_FALLBACK_MARKERS)], s=45, color=color,
                           edgecolors="black", linewidths=0.6, zorder=5, gid=_FALLBACK_GID,
                           label=", ".join(points[j][2] for j in group))
                in_legend += 1
        _legend(ax)


def _plot_latency_vs_accuracy(results: Mapping[str, Any]) -> bytes | None:
    fig = latency_accuracy_figure(results)
    return None if fig is None else _png(fig, tight=True)


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


def write_report(out_dir: Path | str, results: Mapping[str, Any] | Results) -> dict[str, Path]:
    """Check ``results`` through :class:`Results` (a ValueError line and nothing written when they do not fit),
    store a fresh :func:`recommend` record in them, and write results.json, results.csv, the plots that have data,
    and results.md into ``out_dir`` (each atomically). Returns {"json", "csv", "md", each written plot's key: path}."""
    typed = parse_results(results).model_copy()
    typed.recommendation = recommend(typed)
    results = typed.to_json()
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
