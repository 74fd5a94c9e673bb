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
import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from bench.encoders import OrtEncoder, TextRequest, head_labels
from bench.evaluate import evaluate
from bench.machine import bench_threads, machine_facts
from bench.ort_session import SessionRunner, make_feeds, providers_used, request_texts
from export.sessions import PROVIDERS, check_provider, make_session
from bench.report import make_results, timing_row, write_report
from bench.tasks import TaskSpec, load_task
from bench.timing import TimedCall, TimingStats, time_calls
from bench.tokenization import load_tokenizer
from compress.config import BenchConfig, to_plain
from compress.corpus import expand_pattern, read_corpus
from compress.errors import UserError
from compress.model_card import refresh_model_cards
from compress.positions import max_sequence_length
from compress.prepare_data import text_sources
from compress.run_dir import PARITY_FILE, RunDir, now

log = logging.getLogger(__name__)
MAX_TEXT_LINES = 4000


@dataclass
class Variant:
    """One model to measure. ``model``: student, teacher or a fine-tuned name; ``path``: its folder."""

    name: str
    run: str
    model: str
    precision: str
    format: str
    path: Path
    classifier: bool

    def record(self, parameters: int) -> dict[str, Any]:
        return {"name": self.name, "run": self.run, "path": str(self.path), "format": self.format,
                "precision": self.precision, "size_bytes": folder_size(self.path, self.format), "parameters": parameters,
                "model": self.model}


def folder_size(path: Path, fmt: str) -> int:
    """Bytes of the weights: model.onnx (+ external data), the OpenVINO IR (.xml + .bin) or the safetensors/bin files."""
    if fmt == "onnx":
        return sum(p.stat().st_size for p in path.iterdir() if p.name.startswith("model.onnx"))
    if fmt == "openvino":
        from export.openvino_export import ir_size

        return ir_size(path)
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


def onnx_parameters(path: Path) -> int:
    """Elements in the graph's initializers (weights; an INT8 graph also counts its scales)."""
    import onnx

    model = onnx.load(str(path / "model.onnx"), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        count = 1
        for d in init.dims:
            count *= d
        total += count
    return total


def openvino_parameters(path: Path) -> int:
    """Elements in the IR's constants (weights; an INT8 IR also counts its quantization ranges)."""
    from export.openvino_export import IR_FILE, require_openvino

    model = require_openvino().Core().read_model(str(path / IR_FILE))
    total = 0
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            count = 1
            for d in op.get_output_shape(0):
                count *= int(d)
            total += count
    return total


def exported_variants(run_dir: Path, prefix: str) -> list[Variant]:
    """The run's current exported variants (those listed in each model's parity.json): ONNX folders, and OpenVINO
    IR folders (``openvino-bf16`` runs ``openvino-fp32``'s IR compiled to bf16)."""
    found = []
    for model, root in RunDir(run_dir).exported_models():
        for name, record in json.loads((root / PARITY_FILE).read_text(encoding="utf-8"))["variants"].items():
            folder = root / record.get("folder", name)
            if record.get("runtime") == "openvino":
                fmt, precision = "openvino", name.removeprefix("openvino-")
                present = (folder / record["file"]).is_file()
            else:
                fmt, precision, present = "onnx", name, (folder / "model.onnx").is_file()
            if present:
                found.append(Variant(f"{prefix}{model}-{name}", str(run_dir), model, precision, fmt, folder,
                                     head_labels(folder / "config.json") is not None))
    return found


def torch_variants(run_dir: Path, prefix: str, providers: list[str]) -> list[Variant]:
    """The run's teacher and student as PyTorch models (fp32; bf16 too where CUDA is benchmarked)."""
    run = RunDir(run_dir)
    folders = {"student": run.student_dir}
    teacher = run.teacher()
    if teacher:
        folders["teacher"] = Path(teacher)
    precisions = ["fp32"] + (["bf16"] if "cuda" in providers else [])
    return [Variant(f"{prefix}{model}-torch-{precision}", str(run_dir), model, precision, "torch", folder, False)
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


TORCH_PROVIDERS = ("cpu", "cuda")  # where --torch times PyTorch itself (bench.torch_timing)


def ort_offers(provider: str) -> bool:
    """Whether this onnxruntime offers ``provider`` (cpu, cuda, tensorrt)."""
    return PROVIDERS.get(provider) in ort.get_available_providers()


def onnx_calls(variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
    """An ONNX variant ready to time: a session per provider, fed each batch × length (token ids for the model call,
    text for the end-to-end request; on a GPU the request's copies to and from the device are part of it)."""
    calls = []
    tokenizer = load_tokenizer(variant.path, max(cfg.seq_lengths))
    cut = {s: load_tokenizer(variant.path, s) for s in cfg.seq_lengths}  # truncating at each length
    for provider in (p for p in cfg.providers if ort_offers(p)):  # one it lacks was warned of in run()
        session = make_session(variant.path / "model.onnx", provider, cfg.threads,
                               trt_cache_dir=variant.path / ".trt-cache" if provider == "tensorrt" else None)
        names = [i.name for i in session.get_inputs()]
        used = providers_used(session)
        for seq_len in cfg.seq_lengths:
            for batch in cfg.batch_sizes:
                runner = SessionRunner(session, make_feeds(tokenizer, texts, batch, seq_len, names), provider)
                request = TextRequest(session, cut[seq_len], request_texts(tokenizer, texts, batch, seq_len), variant.path)
                calls.append(TimedCall(provider, batch, seq_len, runner, used, request))
    return calls


def openvino_calls(variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
    """An OpenVINO variant ready to time on its CPU plugin, fed as ONNX Runtime's CPU provider is (the rows carry
    provider ``cpu``, so both runtimes share one table, Pareto front and recommendation)."""
    from export.openvino_export import OpenVINOSession

    if "cpu" not in cfg.providers:
        return []
    session = OpenVINOSession(variant.path, "bf16" if variant.precision == "bf16" else "fp32", cfg.threads)
    tokenizer = load_tokenizer(variant.path, max(cfg.seq_lengths))
    used = [f"OpenVINO CPU ({session.inference_precision})"]
    calls = []
    for seq_len in cfg.seq_lengths:
        cut = load_tokenizer(variant.path, seq_len)
        for batch in cfg.batch_sizes:
            feeds = make_feeds(tokenizer, texts, batch, seq_len, session.names)
            request = session.request
            request.infer(feeds)  # the first call with a new shape compiles for it
            text = TextRequest(session, cut, request_texts(tokenizer, texts, batch, seq_len), variant.path)
            calls.append(TimedCall("cpu", batch, seq_len, functools.partial(request.infer, feeds), used, text))
    return calls


def _calls(variant: Variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
    if variant.format == "onnx":
        return onnx_calls(variant, cfg, texts)
    if variant.format == "openvino":
        return openvino_calls(variant, cfg, texts)
    from bench.torch_timing import torch_calls

    return torch_calls(variant, cfg, texts)


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def timing_rounds(variants: list[Variant], cfg: BenchConfig) -> int:
    """How many alternating rounds to time in: ``cfg.rounds`` when every variant's session can stay open (twice
    the weights, for the runtimes' copies and buffers, within half the RAM), else 1, one variant open at a time."""
    weights = sum(folder_size(v.path, v.format) for v in variants)
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
    if any(v.format == "openvino" for v in variants) and "cpu" not in cfg.providers:
        log.info("OpenVINO variants run on the CPU; not timed (providers: %s)", ", ".join(cfg.providers))
    share = {"warmup": cfg.warmup, "min_time_s": cfg.min_time_s / rounds, "min_runs": -(-cfg.min_runs // rounds)}
    held: dict[str, list[TimedCall]] = {}
    pooled: dict[tuple[str, str, int, int], tuple[list[str], list[float], list[float]]] = {}
    for r in range(rounds):
        if rounds > 1:
            log.info("timing round %d/%d", r + 1, rounds)
        for variant in variants if r % 2 == 0 else variants[::-1]:
            calls = held.get(variant.name) or _calls(variant, cfg, texts)
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
    """Fidelity reference of a run: its teacher (the FP32 ONNX export when there is one, for a torch-free
    bench; otherwise the teacher folder in PyTorch)."""
    for fmt in ("onnx", "torch"):
        for v in variants:
            if v.run == run and v.model == "teacher" and v.precision == "fp32" and v.format == fmt:
                return v
    teacher = RunDir(Path(run)).teacher()
    return Variant("teacher", run, "teacher", "fp32", "torch", Path(teacher), False) if teacher else None


def open_variant(variant: Variant, provider: str, max_length: int, threads: int | None = None):
    """An encoder (``bench.encoders.Encoder``) of the variant for scoring, at the bench's thread count."""
    if variant.format == "onnx":  # scored on the CPU where this onnxruntime lacks the provider (see run())
        return OrtEncoder(variant.path, provider=provider if ort_offers(provider) else "cpu", threads=threads,
                          max_length=max_length, name=variant.name)
    if variant.format == "openvino":
        from export.openvino_export import OpenVINOSession

        session = OpenVINOSession(variant.path, "bf16" if variant.precision == "bf16" else "fp32", threads)
        return OrtEncoder(variant.path, session=session, max_length=max_length, name=variant.name)
    import torch

    from bench.torch_encoder import TorchEncoder

    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if "cuda" in provider else "cpu"
    dtype = torch.bfloat16 if variant.precision == "bf16" else torch.float32
    return TorchEncoder(variant.path, device=device, dtype=dtype, max_length=max_length, name=variant.name)


def score_variants(variants: list[Variant], tasks: list[TaskSpec], provider: str,
                   threads: int | None = None) -> list[dict[str, Any]]:
    """Every variant's scores; fidelity against the run's teacher (plus direct embedding cosines for the
    teacher's own variants, which share its embedding space)."""
    scores = []
    opened: dict[tuple[str, int], Any] = {}  # one session per variant and input length, shared by its tasks
    references = {ref.name for ref in (_reference(variants, run) for run in {v.run for v in variants}) if ref}

    def encoder_for(variant: Variant, max_length: int):
        if (variant.name, max_length) not in opened:
            opened[(variant.name, max_length)] = open_variant(variant, provider, max_length, threads)
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
    too_long = [(v.name, _max_positions(v.path)) for v in variants if v.format in ("onnx", "openvino")
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
    records = [v.record(onnx_parameters(v.path) if v.format == "onnx" else openvino_parameters(v.path)
                        if v.format == "openvino" else _torch_parameters(v)) for v in variants]
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


def _torch_parameters(variant: Variant) -> int:
    from bench.torch_timing import parameter_count

    return parameter_count(variant)


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
