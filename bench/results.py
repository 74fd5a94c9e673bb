"""Typed records of ``compress bench``'s results.json (schema version 1, docs/bench-results-schema.md).

results.json is written from :class:`Results` and read back through it (:func:`load_results`); a dict that does
not fit is one ``ValueError`` line naming the first problem and its place (``timings[3].p50_ms: Input should be a
valid number, got 'fast'``). Rows keep keys they do not declare (e.g. ``providers_used``), so a later writer may
add fields without breaking an earlier reader. Fields added after the first release (``end_to_end``,
``recommendation``, the recommendation's ``latency_ms`` and ``ranked_by``) are optional: an older results.json
still loads.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from compress.errors import UserError
from compress.variants import VARIANTS

__all__ = ["SCHEMA_VERSION", "FORMATS", "PRECISIONS", "TORCH_PRECISIONS", "PROVIDER_NAMES", "LatencyStats", "TimingRow", "VariantRecord",
           "ScoreRow", "Settings", "Pick", "TaskChoice", "Budget", "ProviderChoice", "Recommendation", "Results",
           "parse_results", "validate_results", "load_results"]

SCHEMA_VERSION = 1
FORMATS = ("onnx", "openvino", "torch")
TORCH_PRECISIONS = ("fp32", "bf16")  # --torch rows: fp32, and bf16 where CUDA is benchmarked
# A variant's precision: an exported variant's from the export table, a PyTorch row's from TORCH_PRECISIONS.
PRECISIONS = tuple(dict.fromkeys([*TORCH_PRECISIONS, *(v.precision for v in VARIANTS)]))
LEGACY_PRECISIONS = {"int8-qat": "int8"}  # what bench wrote before it took precisions from the table
PROVIDER_NAMES = ("cpu", "cuda", "tensorrt")

Name = Annotated[str, StringConstraints(pattern=r"\S")]  # a non-empty string (not only spaces)
Provider = Literal["cpu", "cuda", "tensorrt"]
Count = Annotated[int, Field(ge=1)]
Ms = Annotated[float, Field(ge=0)]
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
RankedBy = Literal["end_to_end", "model_call", "mixed"]


class _Row(BaseModel):
    """Strict types (no bool for an int, no string for a number), finite numbers, unknown keys kept."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")


def _check_order(row: Any) -> None:
    order = [row.min_ms, row.p50_ms, row.p90_ms, row.p99_ms, row.max_ms]
    slack = 1e-9 * max(1.0, row.max_ms)
    if any(a > b + slack for a, b in zip(order, order[1:])) or not row.min_ms - slack <= row.mean_ms <= row.max_ms + slack:
        raise ValueError(f"latencies out of order (need min <= p50 <= p90 <= p99 <= max and min <= mean <= max): "
                         f"{order}, mean {row.mean_ms}")


class LatencyStats(_Row):
    """Per-call latency of one measurement (``bench.timing.TimingStats``): ``runs`` calls, ``total_s`` seconds, the
    rest in ms."""

    runs: Count
    total_s: Ms
    mean_ms: Ms
    p50_ms: Ms
    p90_ms: Ms
    p99_ms: Ms
    min_ms: Ms
    max_ms: Ms
    std_ms: Ms

    @model_validator(mode="after")
    def _ordered(self):
        _check_order(self)
        return self


class TimingRow(_Row):
    """One (variant, provider, batch, seq_len, threads): the model call's latency, its throughput, and (optional)
    ``end_to_end``: the same request from text to pooled embedding, tokenization included."""

    variant: str
    provider: Provider
    batch: Count
    seq_len: Count
    threads: Count | None
    runs: Count
    total_s: Ms
    mean_ms: Ms
    p50_ms: Ms
    p90_ms: Ms
    p99_ms: Ms
    min_ms: Ms
    max_ms: Ms
    std_ms: Ms
    sequences_per_s: Annotated[float, Field(gt=0)]
    tokens_per_s: Annotated[float, Field(gt=0)]
    end_to_end: LatencyStats | None = None

    @model_validator(mode="after")
    def _ordered(self):
        _check_order(self)
        return self


class VariantRecord(_Row):
    name: Name
    run: str | None
    path: Name
    format: Literal["onnx", "openvino", "torch"]
    precision: Precision
    size_bytes: Annotated[int, Field(ge=0)] | None
    parameters: Annotated[int, Field(ge=0)] | None

    @field_validator("precision", mode="before")
    @classmethod
    def _legacy(cls, value: Any) -> Any:
        """An older results.json named the QAT variants' precision ``int8-qat`` (the variant's name says QAT)."""
        return LEGACY_PRECISIONS.get(value, value) if isinstance(value, str) else value


class ScoreRow(_Row):
    """A score (higher is better); ``language`` None: the overall score."""

    variant: str
    task: Name
    metric: Name
    language: Name | None
    value: float


class Settings(_Row):
    """How the benchmark ran; ``threads``: the one thread count every runtime ran at (None in files from before
    it was always set: the runtimes' defaults)."""

    providers: Annotated[list[Provider], Field(min_length=1)]
    batch_sizes: Annotated[list[Count], Field(min_length=1)]
    seq_lengths: Annotated[list[Count], Field(min_length=1)]
    threads: Count | None
    warmup: Annotated[int, Field(ge=0)]
    min_time_s: Ms
    min_runs: Count | None = None
    rounds: Count | None = None


# ---------------------------------------------------------------- the recommendation (bench.recommend)


class Pick(_Row):
    """A variant at a provider's reference shape: model-call p50, end-to-end p50 (when measured), ``latency_ms``: the
    p50 the recommendation ranks it by (end to end where measured, else the model call; None in files from before it
    ranked end to end), headline score."""

    variant: str
    format: Literal["onnx", "openvino", "torch"]
    p50_ms: Ms
    e2e_p50_ms: Ms | None = None
    score: float | None = None
    latency_ms: Ms | None = None


class TaskChoice(_Row):
    """For one task: ``ship`` is the fastest variant within ``Recommendation.near_best`` of ``best_score`` (None when
    no scored variant was timed); ``pareto_front`` fastest first."""

    task: str
    metric: str
    ship: Pick | None
    best_score: float | None
    pareto_front: list[Pick]


class Budget(_Row):
    """A latency budget (one variant's own ranked p50, see :class:`Pick`) and, per task, the best-scoring variant
    whose ranked p50 fits (or None)."""

    p50_ms: Ms
    best: dict[str, Pick | None]


class ProviderChoice(_Row):
    """The answer for one provider at its reference shape (``batch`` × ``seq_len``, ``threads``). ``ranked_by``: the
    latency its picks are ranked by: ``end_to_end`` (every pick's end-to-end p50), ``model_call`` (none was measured
    end to end; also files from before the ranking was end to end) or ``mixed`` (end to end where measured, the
    model call for the rest)."""

    provider: Provider
    batch: Count
    seq_len: Count
    threads: Count | None
    by_latency: list[Pick]
    tasks: list[TaskChoice]
    budgets: list[Budget]
    ranked_by: RankedBy = "model_call"


class Recommendation(_Row):
    """"Which model to ship", per provider; latencies are p50 at the reference shape, end to end where measured."""

    near_best: float
    providers: list[ProviderChoice]


# ---------------------------------------------------------------- the whole file


class Results(_Row):
    schema_version: Literal[1]
    created: str
    machine: dict[str, Any]
    settings: Settings
    variants: Annotated[list[VariantRecord], Field(min_length=1)]
    timings: list[TimingRow]
    scores: list[ScoreRow]
    recommendation: Recommendation | None = None

    @field_validator("created")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO-8601 time string") from None
        return value

    @model_validator(mode="after")
    def _consistent(self):
        names: set[str] = set()
        for i, v in enumerate(self.variants):
            if v.name in names:
                raise ValueError(f"variants[{i}].name: variant '{v.name}' appears twice")
            names.add(v.name)
        seen: set[tuple] = set()
        for i, t in enumerate(self.timings):
            if t.variant not in names:
                raise ValueError(f"timings[{i}].variant: expected the name of a listed variant, got {t.variant!r}")
            if t.provider not in self.settings.providers:
                raise ValueError(f"timings[{i}].provider: expected one of settings.providers "
                                 f"({', '.join(self.settings.providers)}), got {t.provider!r}")
            key = (t.variant, t.provider, t.batch, t.seq_len, t.threads)
            if key in seen:
                raise ValueError(f"timings[{i}]: a second timing of {t.variant} on {t.provider} at batch {t.batch} × "
                                 f"{t.seq_len} with {t.threads} threads")
            seen.add(key)
        seen = set()
        for i, s in enumerate(self.scores):
            if s.variant not in names:
                raise ValueError(f"scores[{i}].variant: expected the name of a listed variant, got {s.variant!r}")
            key = (s.variant, s.task, s.metric, s.language)
            if key in seen:
                raise ValueError(f"scores[{i}]: a second {s.task}/{s.metric} score of {s.variant} for language {s.language}")
            seen.add(key)
        return self

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict results.json holds (declared keys first, extra keys kept)."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- reading and checking


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text[:80] + "..." if len(text) > 80 else text


def _one_line(err: ValidationError) -> str:
    """The first problem of a ValidationError as ``place: what, got value``; missing keys of one object together."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc, value = first["loc"], first.get("input")
    if first["type"] == "missing":
        parent = loc[:-1]
        keys = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == parent]
        return f"{_where(parent) or 'results'}: missing key(s) {', '.join(keys)}"
    msg = first["msg"].removeprefix("Value error, ")
    if not loc:
        return msg if first["type"] == "value_error" else f"results: {msg}, got {_shown(value)}"
    if isinstance(value, dict):  # a check of the whole row (e.g. latencies out of order)
        return f"{_where(loc)}: {msg}"
    return f"{_where(loc)}: {msg}, got {_shown(value)}"


def parse_results(results: Any) -> Results:
    """``results`` (a dict as results.json holds it, or a Results) as a :class:`Results`; ValueError naming the first
    problem otherwise."""
    if isinstance(results, Results):
        return results
    try:
        return Results.model_validate(results)
    except ValidationError as err:
        raise ValueError(_one_line(err)) from None


def validate_results(results: Any) -> None:
    """Raise ValueError naming the first problem (with its place, e.g. ``timings[3].p50_ms``); None when valid."""
    parse_results(results)


def load_results(path: Path | str) -> Results:
    """Read and check a results.json: a UserError line when it is missing, not JSON, or does not fit the schema."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: run `compress bench` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a results.json ({type(err).__name__}: {err})") from None
    try:
        return parse_results(data)
    except ValueError as err:
        raise UserError(f"{path} does not fit the results schema ({err}): re-run `compress bench`") from None
