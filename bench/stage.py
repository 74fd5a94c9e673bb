"""``compress bench``: latency, throughput, size and accuracy of every exported variant of one or more runs.

For each run folder it finds the exported models (``export/<variant>/`` for the student,
``export/<name>/<variant>/`` for the teacher and fine-tuned models; ``parity.json`` says which are
current), times each on every provider × batch × length with inputs cut from real text, scores each on
the given tasks through ``bench.evaluate``, and writes the report (``bench.report``). With ``--torch`` the
teacher and student are also timed and scored in PyTorch, the reference a user would otherwise deploy.
Nothing here imports torch unless ``--torch`` is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backends import BACKENDS, Backend, TorchBackend
from bench.encoders import MemoizedEncoder, head_labels
from bench.evaluate import evaluate
from bench.machine import bench_threads, machine_facts
from bench.report import make_results, timing_row, write_report
from bench.results import TORCH_PRECISIONS
from bench.tasks import TaskSpec, load_task
from bench.timing import TimedCall, TimingStats, time_calls
from compress.config import BenchConfig, to_plain
from compress.corpus import expand_pattern, read_corpus
from compress.errors import UserError
from compress.model_card import refresh_model_cards
from compress.positions import max_sequence_length
from compress.prepare_data import text_sources
from compress.run_dir import RunDir, now
from compress.variants import BY_NAME, VariantSpec
from export.sessions import check_provider

log = logging.getLogger(__name__)
MAX_TEXT_LINES = 4000


@dataclass
class Variant:
    """One model to measure. ``model``: student, teacher or a fine-tuned name; ``path``: its folder; ``format``: its
    backend's (:data:`bench.backends.BACKENDS`); ``spec``: its row of the export table (None for PyTorch rows)."""

    name: str
    run: str
    model: str
    precision: str
    format: str
    path: Path
    classifier: bool
    spec: VariantSpec | None = None

    @property
    def backend(self) -> Backend:
        return BACKENDS[self.format]

    @property
    def compile_precision(self) -> str:
        """What its runtime computes in: the table's compile precision (OpenVINO's bf16), PyTorch's dtype."""
        return self.spec.compile_precision if self.spec else self.precision

    def record(self, parameters: int) -> dict[str, Any]:
        return {"name": self.name, "run": self.run, "path": str(self.path), "format": self.format,
                "precision": self.precision, "size_bytes": self.backend.size_bytes(self.path),
                "parameters": parameters, "model": self.model}


def torch_variant(name: str, run: str, model: str, precision: str, folder: Path) -> Variant:
    """A Hugging Face folder timed and scored in PyTorch."""
    return Variant(name, run, model, precision, "torch", folder, False)


def exported_variants(run_dir: Path, prefix: str) -> list[Variant]:
    """The run's current exported variants: those each model's parity.json lists whose file is there, with format
    and precision from the export table (``openvino-bf16`` runs ``openvino-fp32``'s IR compiled to bf16)."""
    found = []
    run = RunDir(run_dir)
    for model, root in run.exported_models():
        report = run.export_report(model)
        for name, record in (report.variants if report else {}).items():
            spec, path = BY_NAME[name], record.path(root)
            if path.is_file():
                found.append(Variant(f"{prefix}{model}-{name}", str(run_dir), model, record.precision, spec.format,
                                     path.parent, head_labels(path.parent / "config.json") is not None, spec))
    return found


def torch_variants(run_dir: Path, prefix: str, providers: list[str]) -> list[Variant]:
    """The run's teacher and student as PyTorch models (fp32; bf16 too where CUDA is benchmarked)."""
    run = RunDir(run_dir)
    folders = {"student": run.student_dir}
    teacher = run.teacher()
    if teacher:
        folders["teacher"] = Path(teacher)
    precisions = TORCH_PRECISIONS if "cuda" in providers else TORCH_PRECISIONS[:1]  # bf16 on CUDA only
    return [torch_variant(f"{prefix}{model}-torch-{precision}", str(run_dir), model, precision, folder)
            for model, folder in folders.items() if folder.is_dir() for precision in precisions]


def input_texts(cfg: BenchConfig, run_dirs: list[Path]) -> list[str]:
    """Real text to cut the timed inputs from: ``--text`` or the first run's distillation corpora."""
    sources = list(cfg.text)
    if not sources:
        for run_dir in run_dirs:
            distill_cfg = RunDir(run_dir).distill_config()
            if distill_cfg:
                sources = [c.path for c in distill_cfg.data.corpora]
                break
    lines: list[str] = []
    for pattern in sources:
        for path in expand_pattern(pattern):
            for text in text_sources(path):
                if len(lines) < MAX_TEXT_LINES:
                    lines += read_corpus(text, limit=MAX_TEXT_LINES - len(lines)).lines
    if not lines:
        raise UserError("no text for the benchmark inputs: pass --text FILE (real sentences in the target language)")
    return lines


def _max_positions(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return max_sequence_length(config) or 512


TORCH_PROVIDERS = TorchBackend.runs_on  # where --torch times PyTorch itself (bench.torch_timing)


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def timing_rounds(variants: list[Variant], cfg: BenchConfig) -> int:
    """How many alternating rounds to time in: ``cfg.rounds`` when every variant's session can stay open (twice
    the weights, for the runtimes' copies and buffers, within half the RAM), else 1, one variant open at a time."""
    weights = sum(v.backend.size_bytes(v.path) for v in variants)
    ram = physical_memory()
    if cfg.rounds == 1 or ram is None or 2 * weights <= ram // 2:
        return cfg.rounds
    log.warning("timing in 1 round, one variant at a time: holding all %d sessions open for %d alternating rounds "
                "needs about %.1f GB (RAM %s); the machine's drift may then land on one row, so bench fewer variants "
                "at a time for paired figures", len(variants), cfg.rounds, 2 * weights / 1e9,
                f"{ram / 1e9:.1f} GB")
    return 1


def time_variants(variants: list[Variant], cfg: BenchConfig, texts: list[str], rounds: int) -> list[dict[str, Any]]:
    """Timing rows of every variant × provider × batch × length, measured in ``rounds`` alternating rounds (see
    :func:`timing_rounds`): all sessions are opened once, then each round times every variant in turn (in reverse
    order every other round, so none is always first or last), each shape for ``min_time_s / rounds`` seconds after
    its warm-up; a row pools its samples over the rounds. A slow minute of the machine is then spread over all
    variants instead of landing on one row. With one round, one variant is open at a time.

    Each shape is timed twice alike: the model call on ready token ids, and the end-to-end request (text in,
    embedding out: :class:`bench.encoders.TextRequest`), first one then the other, the order swapped every round;
    the row's ``end_to_end`` pools the latter.

    Measured on the demo's 9 variants (3.3 GB of weights, 4 shapes, ``--min-time 0.5``): 3 rounds held open 76 s and
    4.8 GB peak RSS; 1 round 68 s and 2.7 GB; reopening each variant every round instead took 166 s and grew to
    5.7–6.4 GB (the C library keeps much of what ONNX Runtime frees), which is why there is no such mode."""
    for backend in dict.fromkeys(v.backend for v in variants):
        if not set(backend.runs_on) & set(cfg.providers):
            log.info("%s variants run on %s; not timed (providers: %s)", backend.runtime, ", ".join(backend.runs_on),
                     ", ".join(cfg.providers))
    share = {"warmup": cfg.warmup, "min_time_s": cfg.min_time_s / rounds, "min_runs": -(-cfg.min_runs // rounds)}
    held: dict[str, list[TimedCall]] = {}
    pooled: dict[tuple[str, str, int, int], tuple[list[str], list[float], list[float]]] = {}
    for r in range(rounds):
        if rounds > 1:
            log.info("timing round %d/%d", r + 1, rounds)
        for variant in variants if r % 2 == 0 else variants[::-1]:
            calls = held.get(variant.name) or variant.backend.calls(variant, cfg, texts)
            if rounds > 1:
                held[variant.name] = calls
            for timed in calls:
                key = (variant.name, timed.provider, timed.batch, timed.seq_len)
                _, model, request = pooled.setdefault(key, (timed.providers_used, [], []))
                pairs = [(model, timed.call), (request, timed.request)]
                for samples, fn in pairs if r % 2 == 0 else pairs[::-1]:
                    if fn is not None:
                        samples.extend(time_calls(fn, **share))
            calls = timed = None  # with one round, the last call holds its session: let it go before the next opens
    held.clear()
    rows = []
    for (name, provider, batch, seq_len), (used, seconds, e2e) in pooled.items():  # round 1's order: the variants'
        stats = TimingStats.from_samples(seconds)
        end_to_end = TimingStats.from_samples(e2e) if e2e else None
        rows.append(timing_row(name, provider, batch, seq_len, cfg.threads, stats, end_to_end, providers_used=used))
        log.info("%-28s %-8s b%-3d t%-4d p50 %8.2f ms  end-to-end %8s ms  %9.1f seq/s  (%s)", name, provider, batch,
                 seq_len, stats.p50_ms, f"{end_to_end.p50_ms:.2f}" if end_to_end else "–", rows[-1]["sequences_per_s"],
                 used[0] if used else "")
    return rows


def _scored_tasks(variant: Variant, tasks: list[TaskSpec]) -> list[TaskSpec]:
    """An encoder is scored on every task; a fine-tuned classifier on its own task only."""
    if not variant.classifier:
        return tasks
    return [t for t in tasks if t.kind == "classification" and (variant.model == t.name or variant.model.startswith(t.name + "-"))]


def _reference(variants: list[Variant], run: str) -> Variant | None:
    """Fidelity reference of a run: its teacher (its first FP32 export in the table's order, the ONNX one, for a
    torch-free bench; otherwise the teacher folder in PyTorch)."""
    teachers = [v for v in variants if v.run == run and v.model == "teacher" and v.precision == "fp32"]
    found = next((v for v in teachers if v.spec), None) or next(iter(teachers), None)
    if found:
        return found
    teacher = RunDir(Path(run)).teacher()
    return torch_variant("teacher", run, "teacher", "fp32", Path(teacher)) if teacher else None


def open_variant(variant: Variant, provider: str, max_length: int, threads: int | None = None):
    """An encoder (``bench.encoders.Encoder``) of the variant for scoring, at the bench's thread count (an ONNX
    variant on the CPU where this onnxruntime lacks the provider, see run())."""
    return variant.backend.encoder(variant.path, precision=variant.compile_precision, provider=provider,
                                   max_length=max_length, threads=threads, name=variant.name)


def score_variants(variants: list[Variant], tasks: list[TaskSpec], provider: str,
                   threads: int | None = None) -> list[dict[str, Any]]:
    """Every variant's scores; fidelity against the run's teacher (plus direct embedding cosines for the
    teacher's own variants, which share its embedding space)."""
    scores = []
    opened: dict[tuple[str, int], Any] = {}  # one session per variant and input length, shared by its tasks
    references = {ref.name for ref in (_reference(variants, run) for run in {v.run for v in variants}) if ref}

    def encoder_for(variant: Variant, max_length: int):
        if (variant.name, max_length) not in opened:
            encoder = open_variant(variant, provider, max_length, threads)
            opened[(variant.name, max_length)] = MemoizedEncoder(encoder) if variant.name in references else encoder
        return opened[(variant.name, max_length)]

    for variant in variants:
        for task in _scored_tasks(variant, tasks):
            reference = None
            if task.kind == "fidelity":
                ref = _reference(variants, variant.run)
                if ref is None:
                    log.warning("%s: the run records no teacher to compare with; fidelity skipped", variant.name)
                    continue
                reference = encoder_for(ref, task.max_length)
            encoder = encoder_for(variant, task.max_length)
            same_space = task.kind == "fidelity" and ref.model == variant.model
            for s in evaluate(task, encoder, reference=reference, same_space=same_space):
                scores.append({"variant": variant.name, **s})
            log.info("%-28s %-14s %s %.4f", variant.name, task.name, task.headline,
                     next(s["value"] for s in scores[::-1] if s["task"] == task.name and s["language"] is None
                          and s["metric"] == task.headline))
        for key in [k for k in opened if k[0] == variant.name and variant.name not in references]:
            del opened[key]  # done with this variant; references stay open for the others
    return scores


def run(cfg: BenchConfig, run_dirs: list[Path], out_dir: Path) -> dict[str, Any]:
    """Benchmark and score; writes results.{json,csv,md} and plots into ``out_dir``. Holds each run folder's
    lock meanwhile, so an export cannot swap the variants out from under the timings.

    A provider this onnxruntime does not offer is a one-line error, except with ``--torch`` on cpu or cuda (e.g. a
    CUDA build of torch beside a CPU-only onnxruntime): then PyTorch's rows are timed there, ONNX variants are not,
    and a one-line warning says so."""
    for provider in cfg.providers:
        try:
            check_provider(provider)
        except UserError as err:
            if not (cfg.torch and provider in TORCH_PROVIDERS):
                raise
            log.warning("warning: %s; timing only the PyTorch models on %s", err, provider)
    with contextlib.ExitStack() as held:
        for run_dir in run_dirs:
            if run_dir.is_dir():
                held.enter_context(RunDir(run_dir).locked("compress bench"))
        return _bench(cfg, run_dirs, out_dir)


def _bench(cfg: BenchConfig, run_dirs: list[Path], out_dir: Path) -> dict[str, Any]:
    tasks = [load_task(t) for t in cfg.tasks]
    for task in tasks:
        if cfg.max_eval_examples:
            task.max_examples = min(task.max_examples or cfg.max_eval_examples, cfg.max_eval_examples)
            task.probe_train_examples = min(task.probe_train_examples, cfg.max_eval_examples)
    variants: list[Variant] = []
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise UserError(f"{run_dir} does not exist: pass run folders made by `compress distill`")
        prefix = f"{run_dir.name}/" if len(run_dirs) > 1 else ""
        found = exported_variants(run_dir, prefix) + (torch_variants(run_dir, prefix, cfg.providers) if cfg.torch else [])
        if not found:
            raise UserError(f"{run_dir} has nothing to benchmark: run `compress export {run_dir} --int8` first (or pass --torch)")
        variants += found
    too_long = [(v.name, _max_positions(v.path)) for v in variants if v.backend.fixed_positions
                and _max_positions(v.path) < max(cfg.seq_lengths)]
    if too_long:
        raise UserError(f"--seq-lengths {max(cfg.seq_lengths)} is longer than {too_long[0][0]} accepts "
                        f"({too_long[0][1]} tokens): choose shorter lengths")
    texts = input_texts(cfg, run_dirs)
    threads, threads_from = bench_threads(cfg.threads)
    cfg = cfg.model_copy(update={"threads": threads})  # one count for every runtime, timed and scored alike
    log.info("benchmarking %d variants on %s: batches %s × lengths %s, %d threads for every runtime (%s)",
             len(variants), ", ".join(cfg.providers), cfg.batch_sizes, cfg.seq_lengths, cfg.threads, threads_from)

    rounds = timing_rounds(variants, cfg)
    timings = time_variants(variants, cfg, texts, rounds)
    records = [v.record(v.backend.parameters(v.path)) for v in variants]
    scores = score_variants(variants, tasks, cfg.providers[0], cfg.threads) if tasks else []
    settings = {**to_plain(cfg), "threads_from": threads_from, "rounds": rounds, "runs": [str(r) for r in run_dirs], "finished": now()}
    results = make_results(machine=machine_facts(cfg.threads), settings=settings, variants=records,
                           timings=timings, scores=scores)
    write_report(out_dir, results)
    for run_dir in run_dirs:
        RunDir(run_dir).update_stage("bench", status="complete", finished=now(), outputs={"report": str(out_dir)},
                                     config=to_plain(cfg))
        refresh_model_cards(run_dir)  # the cards of the run's folders show this benchmark
    return results


def summary(results: dict[str, Any]) -> str:
    """A short text table for the terminal: per variant, size, model-call and end-to-end p50 at the reference shape,
    peak throughput and the headline score of each task; the thread count in the heading."""
    from bench.report import headline_metrics, headline_scores, reference_shapes

    shapes = reference_shapes(results)
    provider = results["settings"]["providers"][0]
    batch, seq = shapes.get(provider, (None, None))
    metrics = headline_metrics(results)
    headline = headline_scores(results)
    header = (["variant", "MB", f"p50 ms b{batch}×{seq}", "end-to-end", "best seq/s"]
              + [f"{t} {m}" for t, m in metrics.items()])
    rows = []
    for v in results["variants"]:
        mine = [t for t in results["timings"] if t["variant"] == v["name"] and t["provider"] == provider]
        ref = next((t for t in mine if (t["batch"], t["seq_len"]) == (batch, seq)), None)
        p50 = None if ref is None else ref["p50_ms"]
        e2e = None if ref is None or not ref.get("end_to_end") else ref["end_to_end"]["p50_ms"]
        peak = max((t["sequences_per_s"] for t in mine), default=None)
        rows.append([v["name"], f"{v['size_bytes'] / 2**20:.1f}", "–" if p50 is None else f"{p50:.2f}",
                     "–" if e2e is None else f"{e2e:.2f}", "–" if peak is None else f"{peak:,.0f}"]
                    + [f"{headline[(v['name'], t)]:.4f}" if (v["name"], t) in headline else "–" for t in metrics])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    threads = results["settings"].get("threads")
    return "\n".join([f"{provider}, {threads or 'default'} threads:", line(header)] + [line(r) for r in rows])
