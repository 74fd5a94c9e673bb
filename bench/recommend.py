"""Which model to ship, as data: :func:`recommend` turns results into a :class:`bench.results.Recommendation`, which
results.json stores (``recommendation``) and results.md renders.

Conventions (docs/bench-results-schema.md):

* A task's *headline metric* is the metric of its first overall (``language`` None) score row.
* A provider's *reference shape* is its smallest measured batch × its largest measured length (one online request).
* Latency is what a user's request pays: the end-to-end p50 (text in, tokenization, the model call, pooling,
  embedding out) at the reference shape, and the model call's p50 for a row measured without it (e.g. an older
  results.json). Each pick keeps both and the one it was ranked by (``latency_ms``); ``ranked_by`` says which.
* Per provider and task, *ship* is the fastest variant whose headline score is within ``NEAR_BEST`` (relative) of
  the best; the Pareto front and, per budget (each variant's own latency), the best variant that fits come with it.
"""

from __future__ import annotations

from typing import Any

from bench.pareto import best_under_budget, pareto_front
from bench.results import Budget, Pick, ProviderChoice, Recommendation, Results, TaskChoice, parse_results

__all__ = ["NEAR_BEST", "recommend", "headline_metrics", "headline_scores", "reference_shapes", "reference_picks",
           "ranked_by"]

NEAR_BEST = 0.01  # "ship": the fastest variant within 1 % (relative) of the best score


def headline_metrics(results: Results | Any) -> dict[str, str]:
    """{task: metric of its first overall score row}, tasks in order of appearance."""
    out: dict[str, str] = {}
    for s in parse_results(results).scores:
        if s.language is None and s.task not in out:
            out[s.task] = s.metric
    return out


def headline_scores(results: Results | Any) -> dict[tuple[str, str], float]:
    """{(variant, task): headline value}."""
    results = parse_results(results)
    metrics = headline_metrics(results)
    return {(s.variant, s.task): s.value for s in results.scores
            if s.language is None and metrics.get(s.task) == s.metric}


def reference_shapes(results: Results | Any) -> dict[str, tuple[int, int]]:
    """{provider: (smallest batch, largest seq_len) among its timings}, providers in order of appearance."""
    shapes: dict[str, tuple[int, int]] = {}
    for t in parse_results(results).timings:
        b, s = shapes.get(t.provider, (t.batch, t.seq_len))
        shapes[t.provider] = (min(b, t.batch), max(s, t.seq_len))
    return shapes


def reference_picks(results: Results | Any, provider: str, shape: tuple[int, int]) -> dict[str, Pick]:
    """{variant: its Pick (no score) at ``provider``'s ``shape``}, the first row when several thread counts; its
    ``latency_ms`` is the end-to-end p50 where measured, else the model call's."""
    results = parse_results(results)
    formats = {v.name: v.format for v in results.variants}
    out: dict[str, Pick] = {}
    for t in results.timings:
        if t.provider == provider and (t.batch, t.seq_len) == shape and t.variant not in out:
            e2e = t.end_to_end.p50_ms if t.end_to_end else None
            out[t.variant] = Pick(variant=t.variant, format=formats[t.variant], p50_ms=t.p50_ms, e2e_p50_ms=e2e,
                                  latency_ms=t.p50_ms if e2e is None else e2e)
    return out


def ranked_by(picks: list[Pick]) -> str:
    """``end_to_end`` when every pick was measured end to end, ``model_call`` when none was, else ``mixed``."""
    measured = {p.e2e_p50_ms is not None for p in picks}
    return "mixed" if len(measured) > 1 else "end_to_end" if measured == {True} else "model_call"


def recommend(results: Results | Any) -> Recommendation:
    """Per provider (at its reference shape): the variants by latency (end to end where measured) and, per task with
    scores, the variant to ship, the Pareto front and the best variant under each latency budget."""
    results = parse_results(results)
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    choices = []
    for provider, (batch, seq) in reference_shapes(results).items():
        picks = reference_picks(results, provider, (batch, seq))
        threads = next((t.threads for t in results.timings if t.provider == provider), None)
        tasks = []
        for task, metric in metrics.items():
            rows = [picks[v].model_copy(update={"score": headline[(v, task)]}) for v in picks if (v, task) in headline]
            if not rows:
                tasks.append(TaskChoice(task=task, metric=metric, ship=None, best_score=None, pareto_front=[]))
                continue
            best = max(r.score for r in rows)
            near = [r for r in rows if r.score >= best - NEAR_BEST * abs(best)]
            ship = min(near, key=lambda r: (r.latency_ms, -r.score))
            front = pareto_front([(r.latency_ms, r.score) for r in rows])
            tasks.append(TaskChoice(task=task, metric=metric, ship=ship, best_score=best,
                                    pareto_front=[rows[i] for i in front]))
        budgets = []
        for budget in sorted({picks[v].latency_ms for v in picks if any((v, task) in headline for task in metrics)}):
            best_of = {}
            for task in metrics:
                rows = [{"pick": picks[v], "latency": picks[v].latency_ms, "score": headline[(v, task)]}
                        for v in picks if (v, task) in headline]
                found = best_under_budget(rows, "latency", "score", budget)
                best_of[task] = None if found is None else found["pick"].model_copy(update={"score": found["score"]})
            budgets.append(Budget(p50_ms=budget, best=best_of))
        choices.append(ProviderChoice(provider=provider, batch=batch, seq_len=seq, threads=threads,
                                      by_latency=sorted(picks.values(), key=lambda p: p.latency_ms), tasks=tasks,
                                      budgets=budgets, ranked_by=ranked_by(list(picks.values()))))
    return Recommendation(near_best=NEAR_BEST, providers=choices)
