"""Distillation step speed: what `compress distill` runs against a naive step, side by side in one run.

naive:      both models run to the end (all layers, pooler), Q/K/V recomputed from the full outputs'
            hidden states, relations and KL written the textbook way (softmax, masked_fill, F.kl_div).
naive+loss: the same full forwards, with ``compress.relation_loss`` (isolates the loss's share).
ours:       the product's path: batches from token shards through ``compress.loader``'s DataLoader
            (worker processes and pinned memory on CUDA), the loss by ``compress.distill_step`` (the
            teacher stops at the chosen layer's projections, layers above deleted; the student at its
            last layer's projections; relations blocked and recomputed in backward), under
            ``train_loop.autocast_context`` at ``--precision``.
ours-bf16:  ours under bf16 autocast (``train.precision=bf16``), for the fp32-vs-bf16 question on CPU.

Each does a full optimiser step (forward, backward, AdamW); the variants are timed in alternating rounds,
in a new order each round, so that machine drift hits all alike. The naive variants reuse one batch; ours
draws a new one from the loader every step (its loading cost is in its time). Prints tokens/s, peak memory
(CUDA), MFU against the measured matmul rate, and the ratios.

    python benchmarks/distill_speed.py                       # CPU: 12×384 teacher → 6×384 student
    python benchmarks/distill_speed.py --variants ours,ours-bf16 --rounds 7      # bf16 on this CPU
    python benchmarks/distill_speed.py --device cuda --precision bf16 --batch-size 256 --teacher-hidden 768
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed: the repository's packages and tests

from compress.architectures import arch_spec, qkv_modules  # noqa: E402
from compress.corpus import MixedSampler  # noqa: E402
from compress.distill_step import RelationDistillation  # noqa: E402
from compress.loader import ShardBatches, batches, make_loader, resolve_workers  # noqa: E402
from compress.qkv_capture import drop_layers_above, forward_to_qkv  # noqa: E402
from compress.relation_loss import relation_kd_loss  # noqa: E402
from compress.token_shards import CORPUS_JSON, FORMAT, FORMAT_VERSION, ShardWriter, TokenCorpus, token_dtype  # noqa: E402
from compress.train_loop import autocast_context  # noqa: E402
from tests.textbook_loss import naive_relation_loss  # noqa: E402

VARIANTS = ("naive", "naive+loss", "ours", "ours-bf16")


def synthetic_corpus(folder: Path, rows: int, seq_len: int, vocab: int, seed: int = 0) -> TokenCorpus:
    """A prepared corpus of random ids in the shard format `compress prepare-data` writes: three quarters of
    the rows ``seq_len`` long, a quarter half as long (so batches carry padding, as real ones do)."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(rows) < 0.25, seq_len // 2, seq_len)
    writer = ShardWriter(folder, 0, token_dtype(vocab))
    writer.add(rng.integers(5, vocab, int(lengths.sum())), lengths)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "complete": True, "dtype": token_dtype(vocab).name,
            "vocab_size": vocab, "max_length": seq_len, "shards": [writer.close()]}
    (folder / CORPUS_JSON).write_text(json.dumps(meta))
    return TokenCorpus(folder)


def step_flops(args, tokens_per_seq: int) -> float:
    """Model FLOPs of one distillation step (what the loss needs, counted once, the usual MFU convention).

    Per token and layer: 2·(4H² + 2·H·F) for the projections and FFN, 4·T·H for the attention matmuls.
    Teacher: forward through layer L's Q/K/V; student: forward + backward (3×) to its last Q/K/V;
    relations: 3 × (teacher + student) × 2·T·H per token for the scores, ×3 for the student's backward.
    """
    def layer(h):
        return 2 * (4 * h * h + 2 * h * 4 * h) + 4 * tokens_per_seq * h

    def qkv(h):
        return 2 * 3 * h * h

    teacher = (args.teacher_layers - 1) * layer(args.teacher_hidden) + qkv(args.teacher_hidden)
    student = 3 * ((args.student_layers - 1) * layer(args.student_hidden) + qkv(args.student_hidden))
    relations = 3 * 2 * tokens_per_seq * (args.teacher_hidden + 3 * args.student_hidden)
    return (teacher + student + relations) * args.batch_size * tokens_per_seq


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul FLOP/s of this device at ``dtype`` (the MFU denominator)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    reps, t0 = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def naive_qkv(model, spec, layer, ids, mask):
    hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
    return tuple(proj(hidden) for proj in qkv_modules(model, spec, layer))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher-layers", type=int, default=12)
    ap.add_argument("--teacher-hidden", type=int, default=384)
    ap.add_argument("--student-layers", type=int, default=6)
    ap.add_argument("--student-hidden", type=int, default=384)
    ap.add_argument("--relation-heads", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--variants", default="naive,naive+loss,ours", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    ap.add_argument("--steps-per-round", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="autocast of every variant but ours-bf16 (always bf16)")
    ap.add_argument("--bf16", action="store_true", help="the same as --precision bf16")
    ap.add_argument("--loader-workers", default="auto", help="DataLoader workers of ours (auto: 2 on CUDA, 0 on CPU)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    precision = "bf16" if args.bf16 else args.precision
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")

    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = arch_spec("bert")

    def bert(layers, hidden):
        return BertModel(BertConfig(vocab_size=args.vocab, hidden_size=hidden, num_hidden_layers=layers,
                                    num_attention_heads=hidden // 64 if hidden >= 64 else 1,
                                    intermediate_size=4 * hidden, max_position_embeddings=512)).to(device)

    teacher_full = bert(args.teacher_layers, args.teacher_hidden).eval().requires_grad_(False)
    teacher_cut = bert(args.teacher_layers, args.teacher_hidden).eval().requires_grad_(False)
    teacher_cut.load_state_dict(teacher_full.state_dict())
    t_layer, s_layer = args.teacher_layers - 1, args.student_layers - 1
    drop_layers_above(teacher_cut, spec, t_layer)
    distillation = RelationDistillation(teacher_cut, spec, t_layer, args.relation_heads)
    students = {name: bert(args.student_layers, args.student_hidden) for name in variants}
    for name in variants[1:]:
        students[name].load_state_dict(students[variants[0]].state_dict())
    optims = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, m in students.items()}

    # The product's data path: token shards → sampler → ShardBatches → DataLoader (one per "ours" variant).
    tmp = tempfile.TemporaryDirectory()
    steps = (args.rounds + 2) * args.steps_per_round
    corpus = synthetic_corpus(Path(tmp.name), 4 * args.batch_size * steps, args.seq_len, args.vocab)
    sampler = MixedSampler([len(corpus)], [1.0], 1.0, seed=0)
    workers = resolve_workers(args.loader_workers if args.loader_workers == "auto" else int(args.loader_workers), device)
    loaders = {name: batches(make_loader(ShardBatches([corpus], sampler, args.batch_size, 1, 0, 0, steps, 0), workers, device))
               for name in variants if name.startswith("ours")}
    first = ShardBatches([corpus], sampler, args.batch_size, 1, 0, 0, 1, 0)[0]  # the naive variants' fixed batch
    ids, mask = first["input_ids"].to(device), first["attention_mask"].to(device)

    def autocast(name: str):
        return autocast_context(device, "bf16" if name == "ours-bf16" else precision)

    def step(name: str) -> None:
        student, opt = students[name], optims[name]
        opt.zero_grad(set_to_none=True)
        with autocast(name):
            if name.startswith("ours"):
                batch = next(loaders[name])
                b_ids = batch["input_ids"].to(device, non_blocking=True)
                b_mask = batch["attention_mask"].to(device, non_blocking=True)
                loss, _ = distillation.loss(partial(forward_to_qkv, student, spec, s_layer), b_ids, b_mask)
            else:
                with torch.no_grad():
                    t = naive_qkv(teacher_full, spec, t_layer, ids, mask)
                s = naive_qkv(student, spec, s_layer, ids, mask)
                if name == "naive":
                    loss = naive_relation_loss(s, t, mask, args.relation_heads)
                else:
                    loss, _ = relation_kd_loss(s, t, mask, args.relation_heads)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    # Same numbers first: the textbook loss and the product's loss agree on the same weights (no dropout).
    reference = students[variants[0]].eval()
    with torch.no_grad(), autocast_context(device, precision):
        a = naive_relation_loss(naive_qkv(reference, spec, s_layer, ids, mask),
                                naive_qkv(teacher_full, spec, t_layer, ids, mask), mask, args.relation_heads).item()
        b = distillation.loss(partial(forward_to_qkv, reference, spec, s_layer), ids, mask)[0].item()
    reference.train()
    for name in variants:  # warm-up (also starts the loaders' workers)
        step(name)

    times: dict[str, list[float]] = {name: [] for name in variants}
    peak_mem: dict[str, int] = {}
    for r in range(args.rounds):
        for name in (variants if r % 2 == 0 else variants[::-1]):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(args.steps_per_round):
                step(name)
            times[name].append((time.perf_counter() - t0) / args.steps_per_round)
            if device.type == "cuda":
                peak_mem[name] = max(peak_mem.get(name, 0), torch.cuda.max_memory_allocated())
    tokens = int(first["tokens"])  # every batch has about as many (a quarter of the rows half as long)
    result: dict = {name: {"median_step_s": statistics.median(v), "tokens_per_s": tokens / statistics.median(v)}
                    for name, v in times.items()}
    for name in variants:
        if name in peak_mem:
            result[name]["peak_memory_gib"] = peak_mem[name] / 2**30
    rates = {p: matmul_rate(device, torch.bfloat16 if p == "bf16" else torch.float32) for p in {precision, "bf16"}}
    flops = step_flops(args, args.seq_len)
    for name in (v for v in variants if v.startswith("ours")):
        rate = rates["bf16" if name == "ours-bf16" else precision]
        result[name]["model_tflops"] = flops / result[name]["median_step_s"] / 1e12
        result[name]["mfu"] = result[name]["model_tflops"] * 1e12 / rate
    result["matmul_tflops"] = {p: r / 1e12 for p, r in rates.items()}

    def ratio(slow: str, fast: str) -> float | None:
        """Median of per-round ratios (each round times both side by side)."""
        if slow in times and fast in times:
            return statistics.median(x / y for x, y in zip(times[slow], times[fast]))
        return None

    result["speedup"] = ratio("naive", "ours")
    result["speedup_from_loss"] = ratio("naive", "naive+loss")
    result["bf16_speedup"] = ratio("ours", "ours-bf16")
    result["loss_naive"], result["loss_ours"] = a, b
    result["setup"] = {k: v for k, v in vars(args).items() if k != "json"} | {
        "threads": torch.get_num_threads(), "loader_workers": workers, "precision": precision,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}

    print(f"teacher {args.teacher_layers}×{args.teacher_hidden} → student {args.student_layers}×{args.student_hidden}, "
          f"batch {args.batch_size} × {args.seq_len}, {result['setup']['device_name']} {precision}, "
          f"{torch.get_num_threads()} threads, {workers} loader workers")
    print(f"same loss: textbook {a:.6f}  ours {b:.6f}")
    for name in variants:
        r = result[name]
        mem = f"  peak {r['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in r else ""
        mfu = f"  {r['model_tflops']:.2f} TFLOP/s = {100 * r['mfu']:.0f}% MFU" if "mfu" in r else ""
        print(f"{name:>10}: {r['median_step_s'] * 1000:8.1f} ms/step  {r['tokens_per_s']:10,.0f} tokens/s{mem}{mfu}")
    print("measured matmul rate: " + ", ".join(f"{p} {t:.2f} TFLOP/s" for p, t in result["matmul_tflops"].items()))
    for key, label in (("speedup", "ours / naive"), ("speedup_from_loss", "naive+loss / naive"),
                       ("bf16_speedup", "ours-bf16 / ours")):
        if result[key] is not None:
            print(f"speed-up {label}: {result[key]:.2f}× (median of per-round ratios)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    tmp.cleanup()


if __name__ == "__main__":
    main()
