"""Vocabulary trimming of a real multilingual teacher: what it keeps, what it changes, what it saves.

1. Each language file of --text is split: its first 90% is the trimming corpus, its last 10% is held out.
2. --teacher is trimmed to the trimming corpus (``compress.vocab_trim.trim_model_folder``): vocabulary,
   parameters and weights-file size before and after.
3. Per language, on the held-out lines: share of tokens whose segmentation changed, unknown-token rate
   (and, as a check, the trimming corpus itself, which must come out unchanged).
4. The relation-distillation step (teacher forward to its Q/K/V, student forward and backward, fused
   AdamW step: ``compress.train_loop.make_optimizer``) of a student with the full vocabulary and of the
   same student with the trimmed one, on the same batches, one step of each in turn so that machine noise
   hits both alike; the whole step and its forward, backward and optimizer parts. The teacher keeps its
   full vocabulary and reads ``kept_ids[student ids]``; both students start from the same weights, so
   their first losses must agree.

    python benchmarks/trim_speed.py     # multilingual-e5-small, chatterbot text, 6×384 student, batch 32 × 64, CPU
    python benchmarks/trim_speed.py --padding longest --threads 1   # batches as `compress distill` pads them; 1 thread
    python benchmarks/trim_speed.py --device cuda --batch-size 256 --json trim.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from transformers import AutoTokenizer

from compress.assets import registry
from compress.config import TrainConfig
from compress.corpus import expand_pattern, read_corpus
from compress.errors import UserError
from compress.distill_step import RelationDistillation
from compress.qkv_capture import drop_layers_above, forward_to_qkv
from compress.student import build_student, student_config
from compress.teacher import load_teacher, resolve_relation_heads, resolve_teacher_layer
from compress.train_loop import make_optimizer
from compress.vocab_trim import segmentation_report, trim_embeddings, trim_model_folder

VARIANTS = ("full", "trimmed")
PARTS = ("step", "forward", "backward", "optimizer")
ADAMW_BYTES_PER_PARAM = 16  # fp32 weight, gradient and AdamW's two moments


def split_languages(pattern: str, held_out: float) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(trimming lines, held-out lines) per language (file stem): the last ``held_out`` share of each file."""
    trimming, holdout = {}, {}
    for path in expand_pattern(pattern):
        lines = read_corpus(path).lines
        n_held = max(1, round(held_out * len(lines))) if len(lines) > 1 else 0
        trimming[path.stem], holdout[path.stem] = lines[: len(lines) - n_held], lines[len(lines) - n_held :]
    return trimming, holdout


def write_languages(folder: Path, by_language: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True)
    for language, lines in by_language.items():
        (folder / f"{language}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return folder


def total_row(report: dict[str, dict]) -> dict[str, float | int]:
    """All languages together, from the per-language counts."""
    keys = ("texts", "tokens", "tokens_trimmed", "changed_texts", "changed_tokens")
    total = {k: sum(r[k] for r in report.values()) for k in keys}
    unk_after = sum(r["unk_rate"] * r["tokens_trimmed"] for r in report.values())
    unk_before = sum(r["unk_rate_original"] * r["tokens"] for r in report.values())
    return total | {"changed_text_share": total["changed_texts"] / total["texts"],
                    "changed_token_share": total["changed_tokens"] / total["tokens"],
                    "unk_rate_original": unk_before / total["tokens"], "unk_rate": unk_after / total["tokens_trimmed"]}


def print_segmentation(report: dict[str, dict]) -> None:
    print(f"{'language':>20} {'texts':>6} {'tokens':>7} {'changed texts':>14} {'changed tokens':>15} "
          f"{'tokens after/before':>20} {'unk before':>11} {'unk after':>10}")
    for language, r in sorted(report.items()) + [("all", total_row(report))]:
        print(f"{language:>20} {r['texts']:>6} {r['tokens']:>7} {100 * r['changed_text_share']:>13.1f}% "
              f"{100 * r['changed_token_share']:>14.2f}% {r['tokens_trimmed'] / max(r['tokens'], 1):>20.3f} "
              f"{100 * r['unk_rate_original']:>10.2f}% {100 * r['unk_rate']:>9.2f}%")


def pick_lines(lines: list[str], args) -> list[str]:
    """``args.batches × args.batch_size`` lines at a fixed stride through all languages."""
    stride = max(1, len(lines) // (args.batches * args.batch_size))
    return lines[::stride][: args.batches * args.batch_size]


def encode(tokenizer, texts: list[str], args) -> dict[str, torch.Tensor]:
    """Ids and mask ``[B, T]``: padded to --seq-len, or to the longest line with --padding longest."""
    padding = "max_length" if args.padding == "max_length" else True
    return tokenizer(texts, padding=padding, truncation=True, max_length=args.seq_len, return_tensors="pt")


def trim_and_report(args, teacher_dir: str, pattern: str, work: Path) -> tuple:
    """Steps 1-3: (TrimResult, trimmed folder, trimming lines, JSON figures)."""
    trimming, holdout = split_languages(pattern, args.held_out)
    out_dir = args.out or work / "trimmed"
    t0 = time.perf_counter()
    trim = trim_model_folder(teacher_dir, [write_languages(work / "corpus", trimming)], out_dir,
                             min_count=args.min_count, keep_top=args.keep_top,
                             whole_scripts=not args.seen_characters_only)
    seconds = time.perf_counter() - t0
    figures = {"trim": {k: v for k, v in vars(trim).items() if k not in ("kept_ids", "out_dir")} | {"seconds": seconds}}
    print(f"trimmed {teacher_dir} to {sum(map(len, trimming.values()))} lines in {len(trimming)} languages "
          f"({seconds:.1f} s):")
    print(f"  vocabulary {trim.vocab_before:,} → {trim.vocab_after:,}   parameters {trim.params_before / 1e6:.1f}M → "
          f"{trim.params_after / 1e6:.1f}M   weights file {trim.size_before_bytes / 1e6:.1f} MB → "
          f"{trim.size_after_bytes / 1e6:.1f} MB")

    original_tok, trimmed_tok = AutoTokenizer.from_pretrained(teacher_dir), AutoTokenizer.from_pretrained(out_dir)
    covered = segmentation_report(original_tok, trimmed_tok, trim.kept_ids, trimming)
    assert total_row(covered)["changed_tokens"] == 0, "the trimming corpus itself must keep its segmentation"
    held = segmentation_report(original_tok, trimmed_tok, trim.kept_ids, holdout)
    figures["held_out"] = held | {"all": total_row(held)}
    print(f"\nheld-out lines (last {100 * args.held_out:.0f}% of each file; the trimming corpus itself: 0 changed tokens):")
    print_segmentation(held)
    return trim, out_dir, trimming, figures


def time_distillation(args, teacher_dir: str, trim, out_dir: Path, lines: list[str]) -> dict:
    """Step 4: the same distillation steps for the full and the trimmed student, timed in alternation."""
    device = torch.device(args.device)
    teacher = load_teacher(teacher_dir)
    spec = teacher.spec
    t_cfg = teacher.config.to_dict()
    t_layer = resolve_teacher_layer("auto", t_cfg[spec.num_layers_key], spec)
    relation_heads = resolve_relation_heads("auto", t_cfg[spec.hidden_key], args.student_hidden)
    s_config = student_config(teacher.config, spec, layers=args.student_layers, hidden=args.student_hidden,
                              heads=args.student_heads)
    students = {"full": build_student(s_config, seed=0)}
    students["trimmed"] = copy.deepcopy(students["full"])
    trim_embeddings(students["trimmed"], trim.kept_ids)
    drop_layers_above(teacher.model, spec, t_layer - 1)
    teacher.model.to(device)
    for student in students.values():
        student.to(device)
    optims = {name: make_optimizer(model, TrainConfig()) for name, model in students.items()}

    # The trimmed student reads trimmed ids; the teacher and the full student read kept_ids[those ids].
    kept = torch.tensor(trim.kept_ids)
    texts = pick_lines(lines, args)
    trimmed_tok, original_tok = AutoTokenizer.from_pretrained(out_dir), AutoTokenizer.from_pretrained(teacher_dir)
    batches = []
    for i in range(0, len(texts), args.batch_size):
        enc = encode(trimmed_tok, texts[i : i + args.batch_size], args)
        batches.append({"trimmed": enc["input_ids"].to(device), "full": kept[enc["input_ids"]].to(device),
                        "mask": enc["attention_mask"].to(device)})
    same_ids = all(torch.equal(kept[encode(trimmed_tok, texts[i : i + args.batch_size], args)["input_ids"]],
                               encode(original_tok, texts[i : i + args.batch_size], args)["input_ids"])
                   for i in range(0, len(texts), args.batch_size))

    # The product's step: the teacher reads the full ids the trimmed ids map to (distill's kept-ids map).
    steps = {"full": RelationDistillation(teacher.model, spec, t_layer - 1, relation_heads),
             "trimmed": RelationDistillation(teacher.model, spec, t_layer - 1, relation_heads, to_teacher=kept.to(device))}

    def loss(name: str, batch) -> torch.Tensor:
        student_qkv = partial(forward_to_qkv, students[name], spec, args.student_layers - 1)
        return steps[name].loss(student_qkv, batch[name], batch["mask"])[0]

    for student in students.values():
        student.eval()  # no dropout: equal weights must give equal losses
    with torch.no_grad():
        first = {name: loss(name, batches[0]).item() for name in VARIANTS}
    for student in students.values():
        student.train()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(name: str, batch) -> dict[str, float]:
        """Seconds of the whole step and of its parts: forward (teacher and student), backward, optimizer."""
        optims[name].zero_grad(set_to_none=True)
        marks = [time.perf_counter()]
        value = loss(name, batch)
        sync()
        marks.append(time.perf_counter())
        value.backward()
        sync()
        marks.append(time.perf_counter())
        optims[name].step()
        sync()
        marks.append(time.perf_counter())
        return {"step": marks[3] - marks[0], "forward": marks[1] - marks[0], "backward": marks[2] - marks[1],
                "optimizer": marks[3] - marks[2]}

    for name in VARIANTS:  # warm-up
        step(name, batches[0])
    times: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for i in range(args.steps):  # one step of each in turn: a change in machine load hits both
        for name in VARIANTS:
            times[name].append(step(name, batches[i % len(batches)]))

    tokens = statistics.mean(int(b["mask"].sum()) for b in batches)
    speed: dict = {}
    for name, model in students.items():
        params = model.num_parameters()
        medians = {f"median_{part}_s": statistics.median(t[part] for t in times[name]) for part in PARTS}
        speed[name] = {"params": params, "train_state_mb": params * ADAMW_BYTES_PER_PARAM / 1e6, **medians,
                       "tokens_per_s": tokens / medians["median_step_s"], "first_loss": first[name]}
    # Medians of the step-by-step ratios: each pair ran back to back, under the same machine load.
    for part in PARTS:
        key = "speedup" if part == "step" else f"{part}_speedup"
        speed[key] = statistics.median(f[part] / t[part] for f, t in zip(times["full"], times["trimmed"]))
    speed["teacher_ids_match_original_tokenizer"] = same_ids

    shape = tuple(batches[0]["mask"].shape)
    print(f"\ndistillation step: teacher {t_cfg[spec.num_layers_key]}×{t_cfg[spec.hidden_key]} (layer {t_layer}, full "
          f"vocabulary) → student {args.student_layers}×{args.student_hidden}, batch {shape[0]} × {shape[1]} "
          f"({tokens:.0f} real tokens), {relation_heads} relation heads, {args.device}, {torch.get_num_threads()} threads")
    print(f"teacher ids = kept_ids[student ids] equal the original tokenizer's ids: {same_ids}")
    print(f"same first loss: full {first['full']:.6f}  trimmed {first['trimmed']:.6f}")
    print(f"{'':>8}  {'params':>7}  {'weights+grads+AdamW':>19}  {'ms/step':>8}  {'forward':>8}  {'backward':>8}  "
          f"{'optimizer':>9}  {'tokens/s':>8}")
    for name in VARIANTS:
        r = speed[name]
        print(f"{name:>8}  {r['params'] / 1e6:6.1f}M  {r['train_state_mb']:16,.0f} MB  " + "  ".join(
            f"{r[f'median_{part}_s'] * 1000:{width}.1f}" for part, width in zip(PARTS, (8, 8, 8, 9)))
            + f"  {r['tokens_per_s']:8,.0f}")
    print(f"speed-up trimmed / full (median of back-to-back pairs): {speed['speedup']:.2f}× per step; forward "
          f"{speed['forward_speedup']:.2f}×, backward {speed['backward_speedup']:.2f}×, optimizer {speed['optimizer_speedup']:.1f}×")
    return speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="model folder (default: `compress assets path e5`)")
    ap.add_argument("--text", help="one file per language, a glob pattern (default: `compress assets path chatterbot`)")
    ap.add_argument("--held-out", type=float, default=0.1, help="share of each language file held out")
    ap.add_argument("--min-count", type=int, default=1)
    ap.add_argument("--keep-top", type=int)
    ap.add_argument("--seen-characters-only", action="store_true",
                    help="fallback alphabet: only the characters seen, not every character of the scripts seen")
    ap.add_argument("--out", type=Path, help="keep the trimmed teacher here (default: a temporary folder)")
    ap.add_argument("--student-layers", type=int, default=6)
    ap.add_argument("--student-hidden", type=int, default=384)
    ap.add_argument("--student-heads", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--padding", choices=("max_length", "longest"), default="max_length")
    ap.add_argument("--batches", type=int, default=4, help="distinct batches, cycled through")
    ap.add_argument("--steps", type=int, default=15, help="timed steps of each student, in alternation")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's, one per core); 1 on a busy machine,\n"
                    "where each parallel region of a 2-thread step waits for a descheduled thread")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher_dir = args.teacher or registry.path("e5")
    pattern = args.text or registry.path("chatterbot")

    with tempfile.TemporaryDirectory(prefix="trim-speed-") as work:
        trim, out_dir, trimming, figures = trim_and_report(args, teacher_dir, pattern, Path(work))
        lines = [line for language in trimming.values() for line in language]
        figures["speed"] = time_distillation(args, teacher_dir, trim, out_dir, lines)
    figures["setup"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {
        "teacher": teacher_dir, "text": pattern, "threads": torch.get_num_threads()}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # e.g. assets not built yet: the message says what to run
        raise SystemExit(f"error: {err}") from None
