"""``compress plan``: which student shapes meet a latency budget on this machine, before any distillation.

Candidates are depths × widths × FFN sizes of the teacher's family and vocabulary, with whole heads of the
teacher's head size (so ``student.init=teacher`` can cut each one out of the teacher). Each is built with random
weights, exported through the product's own path (:func:`export.stage.export_model`, the files ``compress
export`` makes for that runtime and precision) and timed with the bench's harness (:func:`bench.stage.time_variants`:
the model call and the request end to end, tokenization included) at one batch × length and thread count, one
candidate at a time (its folder is removed after). With ``trim_vocab`` the candidates keep only the word pieces
the corpus uses, as ``student.trim_vocab`` would (and requests are tokenized by the trimmed tokenizer).

What is exported and timed keeps only the embedding rows of the pieces the timing text uses (:func:`timing_vocabulary`):
a lookup reads the same rows of a table of a few thousand rows as of e5's 250k, and the tokenizer cut to those
pieces gives those texts the same ids, renumbered, at the same speed. Exporting the whole 250k × width table was
most of a candidate's time (benchmarks/plan_speed.py; docs/benchmarks.md). The reported parameters and file size are the whole vocabulary's: the size adds the
bytes per embedding row read from the exported file (:func:`embedding_row_bytes`), and the export stores the table
in INT8 or FP32 as it would for the whole vocabulary. Timings are
cached per machine, runtime, precision, shape, input shape and library versions (``~/.cache/relation-compress/plan/timings.json``), so planning again for
another budget is instant. The candidates within the budget that no larger one beats are printed, largest first,
each with its ``compress distill`` command line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from compress.assets.cache import cache_dir
from compress.config import BenchConfig, ExportConfig, PlanConfig
from compress.errors import UserError
from compress.run_dir import atomic_write_text, library_versions, now
from compress.variants import VARIANTS

log = logging.getLogger(__name__)
CACHE_FILE = "timings.json"


@dataclass(frozen=True)
class Shape:
    """A student shape: ``layers`` × ``hidden`` with ``heads`` attention heads and an FFN of ``ffn``."""

    layers: int
    hidden: int
    heads: int
    ffn: int

    def __str__(self) -> str:
        return f"{self.layers}×{self.hidden}"


def variant_for(runtime: str, precision: str) -> str:
    """The export variant (:data:`compress.variants.VARIANTS`) a user ships for ``runtime`` at ``precision``."""
    for spec in VARIANTS:
        if spec.runtime == runtime and spec.precision == precision and spec.made_with != "qat":
            return spec.name
    offered = sorted({v.precision for v in VARIANTS if v.runtime == runtime})
    raise UserError(f"{runtime} has no {precision} variant (it has {', '.join(offered)}): choose another --precision "
                    "or --runtime")


def _check_machine_makes(variant: str) -> None:
    """A UserError, before any candidate is built, where this machine's export would not make ``variant``
    (openvino-bf16 is made only where the CPU computes in bf16: :func:`export.stage.wanted`)."""
    from compress.variants import BY_NAME

    if BY_NAME[variant].made_with == "cpu-bf16":
        from export.openvino_export import cpu_has_bf16

        if not cpu_has_bf16():
            raise UserError(f"this machine's export makes no {BY_NAME[variant].label}: its CPU has no native bf16 "
                            "(AVX-512 BF16 or AMX); choose --precision fp32 or int8")


def candidate_grid(teacher_config, spec, cfg: PlanConfig) -> list[Shape]:
    """Depths × widths × FFN ratios no larger than the teacher, widths in whole heads of its head size; the
    defaults: depths 2, 3, 4, 6 and widths a third, half, two thirds and all of the teacher's."""
    c = teacher_config.to_dict()
    t_layers, t_hidden, t_heads, t_ffn = (c[k] for k in (spec.num_layers_key, spec.hidden_key, spec.heads_key, spec.ffn_key))
    head = t_hidden // t_heads
    depths = cfg.layers or [d for d in (2, 3, 4, 6) if d <= t_layers]
    widths = cfg.hidden or sorted({max(head, round(t_hidden * f / head) * head) for f in (1 / 3, 1 / 2, 2 / 3, 1)})
    ratios = cfg.ffn_ratios or [t_ffn / t_hidden]
    problems = [f"--layers {d} (the teacher has {t_layers})" for d in depths if not 1 <= d <= t_layers]
    problems += [f"--hidden {w} (not a multiple of the teacher's head size {head}, or wider than its {t_hidden})"
                 for w in widths if w % head or not head <= w <= t_hidden]
    if problems:
        raise UserError(f"these shapes cannot be cut out of this teacher: {'; '.join(problems)}")
    shapes = {Shape(d, w, w // head, min(t_ffn, int(round(w * r)))) for d in depths for w in widths for r in ratios}
    return sorted(shapes, key=lambda s: (s.layers * (s.hidden ** 2 * 4 + 2 * s.hidden * s.ffn), s.layers, s.hidden))


def plan_lines(cfg: PlanConfig, tokenizer) -> list[str]:
    """Text to export and time with: the corpus's lines, or words from the teacher's vocabulary (only lengths
    matter for random weights)."""
    if cfg.corpus:
        from compress.corpus import expand_pattern, sample_lines
        from compress.prepare_data import text_sources

        paths = [t for pattern in cfg.corpus for p in expand_pattern(pattern) for t in text_sources(p)]
        return sample_lines(paths, 512, seed=0)
    rng = np.random.default_rng(0)
    words = [w for w in tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), 20_000))))
             if w.isalpha() and len(w) > 2] or ["text"]
    return [" ".join(rng.choice(words, size=int(rng.integers(20, 200)))) for _ in range(512)]


def candidate_vocabulary(cfg: PlanConfig, teacher_config, tokenizer, folder: Path) -> tuple[Any, list[int] | None]:
    """The tokenizer candidates are built and timed with, and the teacher ids they keep (None: all of them).

    With ``cfg.trim_vocab``: the pieces ``cfg.corpus`` uses, chosen as ``compress distill`` with
    ``student.trim_vocab`` chooses them (:func:`compress.vocab_trim.model_kept_ids`), the trimmed tokenizer saved in
    ``folder``."""
    if not cfg.trim_vocab:
        return tokenizer, None
    from compress.corpus import expand_pattern, iter_documents
    from compress.prepare_data import text_sources
    from compress.vocab_trim import count_pieces, model_kept_ids, trim_tokenizer

    texts = (text for pattern in cfg.corpus for path in expand_pattern(pattern) for source in text_sources(path)
             for text in iter_documents(source) if text)
    kept = model_kept_ids(tokenizer, teacher_config, count_pieces(tokenizer, texts), min_count=cfg.trim_min_count,
                          keep_top=cfg.trim_keep_top)
    log.info("vocabulary trimmed to the corpus: %d → %d pieces", teacher_config.vocab_size, len(kept))
    return trim_tokenizer(tokenizer, kept, folder), kept


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Only warnings from these loggers meanwhile."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class TimingCache:
    """Timings of earlier plans, one JSON file keyed by machine, runtime, precision, shape, inputs and versions."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled
        self.records: dict[str, Any] = {}
        if enabled and path.is_file():
            try:
                self.records = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("ignoring a damaged timing cache %s", path)

    @staticmethod
    def key(**facts: Any) -> str:
        return json.dumps(facts, sort_keys=True)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key) if self.enabled else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.records[key] = record
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.records, indent=1) + "\n")


def timing_vocabulary(tokenizer, teacher_config, kept_ids: list[int] | None, lines: list[str],
                      folder: Path) -> tuple[Any, list[int]]:
    """The tokenizer candidates are timed with, saved in ``folder``, and the ids of the candidates' vocabulary it
    keeps (sorted): the pieces ``lines`` use under ``tokenizer``, its special tokens and the model config's token
    ids. For ``lines`` it gives the ids ``tokenizer`` gives, renumbered (:func:`compress.vocab_trim.trim_tokenizer`
    keeps every piece they use). ``kept_ids``: the teacher ids ``tokenizer`` keeps (None: all). Their count is odd
    (one unused id added if need be), so that no other tensor of an exported model has as many rows
    (:func:`embedding_row_bytes`)."""
    from compress.vocab_trim import choose_kept_ids, config_token_ids, count_pieces, trim_tokenizer

    renumber = {old: new for new, old in enumerate(kept_ids)} if kept_ids is not None else {}
    config_ids = {renumber.get(i, i) for i in config_token_ids(teacher_config)}
    ids = set(choose_kept_ids(tokenizer, count_pieces(tokenizer, lines), whole_scripts=False)) | config_ids
    if len(ids) % 2 == 0 and len(ids) < len(tokenizer):
        ids.add(next(i for i in range(len(tokenizer)) if i not in ids))
    ids = sorted(ids)
    return trim_tokenizer(tokenizer, ids, folder), ids


def embedding_row_bytes(file: Path, rows: int) -> float:
    """Bytes per row of the word-embedding table of ``rows`` rows in an exported ONNX file or OpenVINO IR: the
    constants with ``rows`` rows (the table and, where it is INT8 per row, its scales; ``rows`` odd, which no
    other dimension of these encoders is), over ``rows``. Their names do not tell: NNCF renames the table."""
    if file.suffix == ".onnx":
        import onnx
        from onnx.helper import tensor_dtype_to_np_dtype

        graph = onnx.load(str(file), load_external_data=False).graph
        sizes = [int(np.prod(t.dims)) * tensor_dtype_to_np_dtype(t.data_type).itemsize for t in graph.initializer
                 if t.dims and t.dims[0] == rows]
    else:
        import xml.etree.ElementTree as ET

        sizes = [int(data.get("size")) for layer in ET.parse(file).getroot().iter("layer")
                 if layer.get("type") == "Const" and (data := layer.find("data")) is not None
                 and data.get("shape", "").replace(" ", "").split(",")[0] == str(rows)]
    if not sizes:
        raise RuntimeError(f"no table of {rows} rows in {file}")
    return sum(sizes) / rows


def export_candidate(shape: Shape, teacher_config, spec, tokenizer, lines: list[str], variant: str, work: Path,
                     kept_ids: list[int] | None = None, timing_ids: list[int] | None = None):
    """Build ``shape`` with random weights in ``work/model`` and export it to ``work/export`` as ``compress export``
    would for ``variant``'s runtime and precision. Its vocabulary is the teacher's cut to ``kept_ids`` when given;
    with ``timing_ids`` (ids of that vocabulary, ``tokenizer`` the matching tokenizer: :func:`timing_vocabulary`)
    only those rows are built and exported, and the size is the whole vocabulary's. Returns (the bench's Variant of
    the file that ships, its size in bytes, its parameter counts)."""
    from bench.stage import Variant
    from compress.student import build_student, student_config
    from compress.teacher import count_parameters
    from compress.variants import BY_NAME
    from compress.vocab_trim import trim_embeddings
    from export.stage import export_model, resolve_quantize_embeddings

    folder = work / "model"
    model = build_student(student_config(teacher_config, spec, layers=shape.layers, hidden=shape.hidden,
                                         heads=shape.heads, intermediate_size=shape.ffn), seed=0)
    if kept_ids is not None:
        trim_embeddings(model, kept_ids)
    params = count_parameters(model)
    rows = model.get_input_embeddings().weight.shape[0]
    quantize_embeddings = resolve_quantize_embeddings("auto", model)  # as for the whole table
    if timing_ids is not None:
        trim_embeddings(model, timing_ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    table = BY_NAME[variant]
    export_cfg = ExportConfig(runtimes=[table.runtime], int8=table.precision == "int8", calib_samples=32,
                              parity_samples=16, quantize_embeddings=quantize_embeddings, force=True)
    report, _ = export_model(folder, work / "export", export_cfg, lines)
    record = report.variants[variant]
    file = record.path(work / "export")
    size = record.size_bytes
    if timing_ids is not None and len(timing_ids) < rows:
        size += round((rows - len(timing_ids)) * embedding_row_bytes(file, len(timing_ids)))
    return Variant(f"{shape}", str(work), "student", table.precision, table.format, file.parent, False, table), size, params


def time_candidate(timed, bench_cfg: BenchConfig, lines: list[str]) -> dict[str, Any]:
    """The model call's and the end-to-end p50 of one exported candidate, alone (one round)."""
    from bench.stage import time_variants

    (row,) = time_variants([timed], bench_cfg, lines, rounds=1)
    return {"p50_ms": row["p50_ms"], "end_to_end_p50_ms": (row.get("end_to_end") or {}).get("p50_ms")}


@dataclass(frozen=True)
class TimingText:
    """What every candidate is exported and timed with: ``lines`` (:func:`plan_lines`), the tokenizer cut to the
    pieces they use and those pieces' ids (:func:`timing_vocabulary`)."""

    lines: list[str]
    tokenizer: Any
    ids: list[int]


def _measure(shape: Shape, bench_cfg: BenchConfig, teacher_config, spec, text: TimingText, variant: str, work: Path,
             kept_ids: list[int] | None) -> dict[str, Any]:
    timed, size, params = export_candidate(shape, teacher_config, spec, text.tokenizer, text.lines, variant, work,
                                           kept_ids, text.ids)
    return {**time_candidate(timed, bench_cfg, text.lines), "size_bytes": size, "parameters": params["total"],
            "embedding_parameters": params["word_embeddings"], "measured": now()}


def bench_config(cfg: PlanConfig, threads: int) -> BenchConfig:
    """The bench settings a plan times with: one batch × length, short measurements."""
    return BenchConfig(batch_sizes=[cfg.batch_size], seq_lengths=[cfg.seq_length], threads=threads, warmup=3,
                       min_time_s=cfg.min_time_s, min_runs=10, rounds=1)


def run(cfg: PlanConfig) -> dict[str, Any]:
    """Time the candidates (cached) and return the plan: every candidate's figures and the frontier."""
    from compress.teacher import load_teacher_config, load_tokenizer

    variant = variant_for(cfg.runtime, cfg.precision)
    _check_machine_makes(variant)
    teacher_config, spec = load_teacher_config(cfg.teacher)
    shapes = candidate_grid(teacher_config, spec, cfg)
    vocab_dir = Path(tempfile.mkdtemp(prefix="compress-plan-vocab-"))
    try:
        tokenizer, kept_ids = candidate_vocabulary(cfg, teacher_config, load_tokenizer(cfg.teacher), vocab_dir / "candidates")
        return _run(cfg, variant, teacher_config, spec, shapes, tokenizer, kept_ids, vocab_dir / "timing")
    finally:
        shutil.rmtree(vocab_dir, ignore_errors=True)


def _run(cfg: PlanConfig, variant: str, teacher_config, spec, shapes: list[Shape], tokenizer,
         kept_ids: list[int] | None, timing_dir: Path) -> dict[str, Any]:
    """:func:`run` once the candidates' vocabulary is known (``kept_ids``: teacher ids kept, None: all);
    ``timing_dir``: where the timing tokenizer is saved."""
    from bench.machine import bench_threads
    from export.isa import cpu_features

    vocab = len(kept_ids) if kept_ids is not None else teacher_config.vocab_size
    threads, _ = bench_threads(cfg.threads)
    bench_cfg = bench_config(cfg, threads)
    versions = library_versions(("onnxruntime", "openvino", "nncf", "relation-compress"))
    machine = {"cpu": cpu_features().get("model"), "threads": threads}
    cache = TimingCache(cache_dir() / "plan" / CACHE_FILE, enabled=cfg.cache)
    text: TimingText | None = None  # made at the first candidate that is not in the cache
    rows = []
    for i, shape in enumerate(shapes, 1):
        key = cache.key(machine=machine, runtime=cfg.runtime, variant=variant, shape=asdict(shape),
                        vocab=vocab, family=teacher_config.model_type, batch=cfg.batch_size,
                        seq=cfg.seq_length, versions=versions)
        figures = cache.get(key)
        if figures is None:
            log.info("candidate %d/%d: %s (%d heads, FFN %d): export to %s and time", i, len(shapes), shape,
                     shape.heads, shape.ffn, variant)
            if text is None:
                lines = plan_lines(cfg, tokenizer)
                text = TimingText(lines, *timing_vocabulary(tokenizer, teacher_config, kept_ids, lines, timing_dir))
                log.info("exported and timed with the %s pieces of the vocabulary the timing text uses", f"{len(text.ids):,}")
            work = Path(tempfile.mkdtemp(prefix="compress-plan-"))
            try:
                with _quiet("export", "bench.stage"):  # the plan's own lines say what is going on
                    figures = _measure(shape, bench_cfg, teacher_config, spec, text, variant, work, kept_ids)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            cache.put(key, figures)
        else:
            log.info("candidate %d/%d: %s (cached from %s)", i, len(shapes), shape, figures["measured"])
        log.info("%s: p50 %.2f ms, end to end %.2f ms", shape, figures["p50_ms"], figures["end_to_end_p50_ms"] or float("nan"))
        rows.append({**asdict(shape), **figures})
    return {"teacher": cfg.teacher, "runtime": cfg.runtime, "precision": cfg.precision, "variant": variant,
            "batch_size": cfg.batch_size, "seq_length": cfg.seq_length, "threads": threads, "machine": machine,
            "vocab_size": vocab, "distill_overrides": _trim_overrides(cfg), "budget_ms": cfg.budget_ms,
            "candidates": rows, "frontier": frontier(rows, cfg.budget_ms)}


def latency(row: dict[str, Any]) -> float:
    """What a request costs: the end-to-end p50 (the model call's where it was not measured)."""
    return row["end_to_end_p50_ms"] if row.get("end_to_end_p50_ms") is not None else row["p50_ms"]


def frontier(rows: list[dict[str, Any]], budget_ms: float) -> list[dict[str, Any]]:
    """The candidates within the budget that no other within it beats with more non-embedding parameters and no
    more latency; largest first. A UserError when none is within the budget."""
    within = [r for r in rows if latency(r) <= budget_ms]
    if not within:
        fastest = min(rows, key=latency)
        raise UserError(f"no candidate meets {budget_ms:g} ms: the fastest, {fastest['layers']}×{fastest['hidden']}, "
                        f"takes {latency(fastest):.2f} ms end to end here: raise --budget-ms, or try smaller --layers, "
                        "--hidden, --seq-length or batch size")

    def body(r):
        return r["parameters"] - r["embedding_parameters"]

    kept = [r for r in within if not any(body(o) > body(r) and latency(o) <= latency(r) for o in within)]
    return sorted(kept, key=lambda r: (-body(r), latency(r)))


def _trim_overrides(cfg: PlanConfig) -> list[str]:
    """The ``compress distill`` overrides that trim the student's vocabulary as the plan did (none without trimming)."""
    if not cfg.trim_vocab:
        return []
    extra = ["student.trim_vocab=true"]
    if cfg.trim_min_count != 1:
        extra.append(f"student.trim_min_count={cfg.trim_min_count}")
    if cfg.trim_keep_top is not None:
        extra.append(f"student.trim_keep_top={cfg.trim_keep_top}")
    return extra


def distill_command(row: dict[str, Any], plan: dict[str, Any]) -> str:
    return " ".join([f"compress distill --teacher {plan['teacher']} --corpus CORPUS --run-dir runs/{row['layers']}x{row['hidden']}",
                     f"--layers {row['layers']} --hidden {row['hidden']} --heads {row['heads']}",
                     f"student.intermediate_size={row['ffn']} student.init=teacher", *plan.get("distill_overrides", [])])


def summary(plan: dict[str, Any]) -> str:
    """The frontier as a text table, then each candidate's distill command."""
    header = (f"{plan['runtime']} {plan['precision']} ({plan['variant']}), batch {plan['batch_size']} × "
              f"{plan['seq_length']} tokens, {plan['threads']} threads, {plan['machine']['cpu']}; "
              f"budget {plan['budget_ms']:g} ms end to end"
              + (f"; vocabulary trimmed to the corpus's {plan['vocab_size']:,} pieces" if plan.get("distill_overrides") else ""))
    lines = [header, f"{'shape':>8}  {'heads':>5}  {'FFN':>5}  {'params':>8}  {'w/o emb.':>8}  {'MiB':>6}  "
             f"{'call ms':>7}  {'e2e ms':>7}"]
    for r in plan["frontier"]:
        lines.append(f"{r['layers']}×{r['hidden']:<6} {r['heads']:>5}  {r['ffn']:>5}  {r['parameters'] / 1e6:7.1f}M  "
                     f"{(r['parameters'] - r['embedding_parameters']) / 1e6:7.1f}M  {r['size_bytes'] / 2**20:6.1f}  "
                     f"{r['p50_ms']:7.2f}  {latency(r):7.2f}")
    lines.append("")
    lines += [distill_command(r, plan) for r in plan["frontier"]]
    return "\n".join(lines)
