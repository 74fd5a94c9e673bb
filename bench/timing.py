"""Timing a callable: warm-up, then timed calls until both a minimum time and a minimum count are reached.

Each call is timed on its own with :func:`time.perf_counter`, so the statistics describe single-call latency
(percentiles, spread), not only a mean. What the harness adds to one sample is two ``perf_counter`` calls and a
subtraction (tens of nanoseconds); the loop bookkeeping between calls falls outside the samples.
``benchmarks/harness_overhead.py`` measures the difference against a bare ``for`` loop.

Percentiles use numpy's default method (``method="linear"``, Hyndman & Fan type 7): the p-th percentile of n
sorted samples x[0..n-1] is x at fractional rank (n-1)·p/100, interpolated linearly between neighbours.
For the samples 1, 2, ..., 100 ms that gives p50 = 50.5, p90 = 90.1 and p99 = 99.01 ms.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TimedCall", "TimingStats", "measure", "time_calls", "throughput"]


@dataclass(frozen=True)
class TimingStats:
    """Summary of per-call wall-clock times. ``total_s`` is the sum of the samples; the rest are milliseconds.

    ``std_ms`` is the population standard deviation (numpy's default, ``ddof=0``), so one sample gives 0.
    """

    runs: int
    total_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float

    @classmethod
    def from_samples(cls, seconds: Sequence[float]) -> TimingStats:
        """Statistics of per-call durations given in seconds (at least one, none negative or non-finite)."""
        samples = np.asarray(seconds, dtype=np.float64)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError("TimingStats.from_samples needs a non-empty 1-D sequence of durations in seconds")
        if not np.all(np.isfinite(samples)) or np.any(samples < 0):
            raise ValueError("TimingStats.from_samples: durations must be finite and >= 0")
        ms = samples * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])  # numpy's default linear interpolation (see module doc)
        return cls(runs=int(ms.size), total_s=float(samples.sum()), mean_ms=float(ms.mean()), p50_ms=float(p50),
                   p90_ms=float(p90), p99_ms=float(p99), min_ms=float(ms.min()), max_ms=float(ms.max()),
                   std_ms=float(ms.std()))

    def as_dict(self) -> dict[str, float | int]:
        """The fields by name, in declaration order (the keys a results.json timing row carries)."""
        return dataclasses.asdict(self)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TimingStats))


@dataclass
class TimedCall:
    """One model on one provider × batch × length, loaded and fed: ``call()`` runs one inference on ready token ids;
    ``request()`` (when given) is the same request end to end, as a user sends it: text in, tokenization, the call,
    pooling (and normalization), the embedding out on the host. What a timing round times, both alike;
    ``providers_used`` says what ran it (e.g. ``CPUExecutionProvider``, ``OpenVINO CPU (bf16)``)."""

    provider: str
    batch: int
    seq_len: int
    call: Callable[[], object]
    providers_used: list[str]
    request: Callable[[], object] | None = None


def measure(fn: Callable[[], object], *, warmup: int = 5, min_time_s: float = 1.0, min_runs: int = 10,
            max_runs: int | None = None) -> TimingStats:
    """The statistics of :func:`time_calls`."""
    return TimingStats.from_samples(time_calls(fn, warmup=warmup, min_time_s=min_time_s, min_runs=min_runs,
                                               max_runs=max_runs))


def time_calls(fn: Callable[[], object], *, warmup: int = 5, min_time_s: float = 1.0, min_runs: int = 10,
               max_runs: int | None = None) -> list[float]:
    """Call ``fn()`` ``warmup`` times untimed, then time single calls until at least ``min_runs`` calls AND at
    least ``min_time_s`` seconds (measured from the first timed call) have passed; ``max_runs`` (if given)
    stops earlier whatever the time. Returns each call's duration in seconds.

    The garbage collector is paused during the timed calls (as :mod:`timeit` does) and restored after, so a
    collection of unrelated objects does not land in one sample; reference counting still frees ``fn``'s
    results at once.
    """
    if warmup < 0 or min_runs < 1 or min_time_s < 0 or not math.isfinite(min_time_s):
        raise ValueError(f"measure: need warmup >= 0, min_runs >= 1 and finite min_time_s >= 0 "
                         f"(got warmup={warmup}, min_runs={min_runs}, min_time_s={min_time_s})")
    if max_runs is not None and max_runs < min_runs:
        raise ValueError(f"measure: max_runs ({max_runs}) is below min_runs ({min_runs})")
    for _ in range(warmup):
        fn()
    limit = max_runs if max_runs is not None else math.inf
    clock = time.perf_counter
    samples: list[float] = []
    append = samples.append  # local names: no attribute look-ups inside the loop
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        n = 0
        end = clock() + min_time_s
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            append(t1 - t0)
            n += 1
            if (n >= min_runs and t1 >= end) or n >= limit:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def throughput(stats: TimingStats, batch: int, seq_len: int) -> dict[str, float]:
    """Sequences and tokens per second implied by the mean latency of one call on a ``batch`` × ``seq_len`` input."""
    if batch < 1 or seq_len < 1:
        raise ValueError(f"throughput: batch and seq_len must be >= 1 (got {batch}, {seq_len})")
    if not stats.mean_ms > 0:
        raise ValueError(f"throughput: mean latency must be > 0 ms (got {stats.mean_ms})")
    per_s = 1000.0 / stats.mean_ms
    return {"sequences_per_s": batch * per_s, "tokens_per_s": batch * seq_len * per_s}
