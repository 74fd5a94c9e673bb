"""Latency/accuracy trade-offs: the Pareto front and the best model under a latency budget.

Lower latency is better and a higher score is better. Point *a* dominates point *b* when *a* is no slower and
scores no lower, and is strictly better in at least one of the two. Equal points do not dominate each other, so
duplicates on the front are all kept. Points whose latency or score is missing (None) or not finite are never
on the front and dominate nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["pareto_front", "best_under_budget"]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(latency, score)`` points, fastest first (ties: higher score, then index)."""
    valid = [i for i, (lat, score) in enumerate(points) if _finite(lat) and _finite(score)]
    front = []
    for i in valid:
        lat_i, score_i = points[i]
        dominated = any(
            points[j][0] <= lat_i and points[j][1] >= score_i and (points[j][0] < lat_i or points[j][1] > score_i)
            for j in valid if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1], i))


def best_under_budget(rows: Sequence[Mapping[str, Any]], latency_key: str, score_key: str,
                      budget_ms: float) -> Mapping[str, Any] | None:
    """The row with the highest ``score_key`` among those whose ``latency_key`` is <= ``budget_ms``; on equal
    scores the faster row, then the earlier one. None when no row with both values fits the budget."""
    best = None
    for row in rows:
        lat, score = row.get(latency_key), row.get(score_key)
        if not (_finite(lat) and _finite(score)) or lat > budget_ms:
            continue
        if best is None or (score, -lat) > (best[score_key], -best[latency_key]):
            best = row
    return best
