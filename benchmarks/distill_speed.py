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
ours-triton: ours with the fused Triton relation loss (``RelationDistillation(kernel="triton")``,
            ``compress.relation_kernel``); ours itself uses the torch path (``kernel="torch"``). On CUDA it runs
            natively; on a CPU only under Triton's interpreter (``TRITON_INTERPRET=1``, set below when this
            variant is asked for), which is very slow: a dry run at tiny shapes, no speed claim.

Each does a full optimiser step (forward, backward, AdamW); the variants are timed in alternating rounds,
in a new order each round, so that machine drift hits all alike. The naive variants reuse one batch; ours
draws a new one from the loader every step (its loading cost is in its time). Prints tokens/s, peak memory
(CUDA), MFU against the measured matmul rate, and the ratios.

Then, for each ours variant, the time of each phase of a step (teacher forward to its layer's Q/K/V, student
forward to its last Q/K/V, relation loss forward, relation loss backward to the student's Q/K/V, the rest of the
student's backward, AdamW step), from a separate step that runs the phases one by one on the naive variants'
fixed batch (so no loading), timed with CUDA events (one synchronisation after all measured steps) or
``time.perf_counter`` on CPU; and the relation loss's GPU-memory traffic per step, torch path against the fused
kernel, counted from the tensors each one reads and writes (:func:`relation_traffic_bytes`).

``--peak-memory-vs-length`` measures instead the peak RSS growth of one relation-loss forward and backward
(torch path, beside the textbook loss) at lengths 64 to 512, each in a fresh process.

    python benchmarks/distill_speed.py                       # CPU: 12×384 teacher → 6×384 student
    python benchmarks/distill_speed.py --variants ours,ours-bf16 --rounds 7      # bf16 on this CPU
    python benchmarks/distill_speed.py --device cuda --precision bf16 --batch-size 256 --teacher-hidden 768
    python benchmarks/distill_speed.py --device cuda --precision bf16 --batch-size 256 --teacher-hidden 768 \
        --variants ours,ours-triton                          # the fused relation loss against the torch path
    python benchmarks/distill_speed.py --variants ours,ours-triton --teacher-layers 2 --teacher-hidden 64 \
        --student-layers 2 --student-hidden 64 --relation-heads 4 --batch-size 2 --seq-len 16 --rounds 1 \
        --steps-per-round 1 --phase-steps 1 --vocab 1000     # CPU dry run under Triton's interpreter
    python benchmarks/distill_speed.py --peak-memory-vs-length   # CPU: peak RSS of the loss at T = 64 … 512
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path


def _interpret_triton_off_cuda(argv: list[str]) -> None:
    """ours-triton off CUDA runs under Triton's interpreter, which is read when a kernel is defined: set it before
    anything imports compress.relation_kernel (or triton)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--variants", default="")
    pre.add_argument("--device", default="cpu")
    known, _ = pre.parse_known_args(argv)
    if "ours-triton" in (v.strip() for v in known.variants.split(",")) and not known.device.startswith("cuda"):
        os.environ.setdefault("TRITON_INTERPRET", "1")


_interpret_triton_off_cuda(sys.argv[1:])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed: the repository's packages and tests

from compress.architectures import arch_spec, qkv_modules  # noqa: E402
from compress.corpus import MixedSampler  # noqa: E402
from compress.distill_step import RelationDistillation  # noqa: E402
from compress.loader import ShardBatches, batches, make_loader, resolve_workers  # noqa: E402
from compress.qkv_capture import drop_layers_above, forward_to_qkv  # noqa: E402
from compress.relation_loss import RELATIONS, relation_kd_loss, resolve_relation_kernel  # noqa: E402
from compress.token_shards import CORPUS_JSON, FORMAT, FORMAT_VERSION, ShardWriter, TokenCorpus, token_dtype  # noqa: E402
from compress.train_loop import autocast_context  # noqa: E402
from reference.textbook_loss import naive_relation_loss  # noqa: E402

VARIANTS = ("naive", "naive+loss", "ours", "ours-bf16", "ours-triton")
PHASES = ("teacher fwd", "student fwd", "loss fwd", "loss bwd", "student bwd", "optimizer")
LOSS_PHASES = ("loss fwd", "loss bwd")
# The shape of the GPU goal (docs/benchmarks.md): 12×768 teacher → 6×384 student, 48 relation heads, batch 256.
BASE_SHAPE = {"batch": 256, "relation_heads": 48, "student_hidden": 384, "teacher_hidden": 768}
MEMORY_LENGTHS = (64, 128, 256, 512)
MEMORY_SHAPE = {"batch": 8, "relation_heads": 48, "student_hidden": 384, "teacher_hidden": 768}

# Passes over one [B·R, T, T] float32 tensor that compress.relation_loss._RelationKL makes per relation (Q-Q, K-K or
# V-V), summed over its blocks: each elementwise op, softmax and reduction reads each [B·R, T, T] operand once and
# writes its result once; a batched matmul writes its [B·R, T, T] output (the scores) or reads its [B·R, T, T]
# operand (G) once. T = teacher's, S = student's, M = a tensor mixing both.
#   forward:  S_t = baddbmm (W_T) · log_softmax(S_t) (R_T W_T) · S_s = baddbmm (W_S) · log_softmax(S_s) (R_S W_S)
#             · p_t = exp(log_p_t) (R_T W_T) · log_p_t − log_p_s (R_T R_S W_M) · p_t · (…) (R_T R_M W_M)
#             · .sum(-1) (R_M)                                                       = 15: teacher 7, student 4, mixed 4
#   backward: S_s (W_S) · G = softmax(S_s) (R_S W_S) · S_t (W_T) · softmax(S_t) (R_T W_T) · G −= P_t (R_S R_T W_M)
#             · G *= w (R_M W_M) · bmm(G, X) (R_M) · baddbmm(…, Gᵀ, X) (R_M)        = 13: teacher 4, student 4, mixed 5
# 28 per relation (teacher 11, student 8, mixed 9), 84 per step. A lower bound: a softmax over rows too long for
# one pass, baddbmm's copy of the broadcast key bias into its output, and the reads of Q/K/V are not counted.
TORCH_PASSES_PER_RELATION = 28


def relation_traffic_bytes(batch: int, length: int, relation_heads: int, student_hidden: int, teacher_hidden: int,
                           element_bytes: int) -> dict[str, int]:
    """GPU-memory bytes one step's relation loss (Q-Q, K-K, V-V; forward and backward) reads and writes.

    torch: ``TORCH_PASSES_PER_RELATION`` passes over ``[B·R, T, T]`` float32 per relation (see the comment above).
    triton (compress.relation_kernel): per relation, the forward reads the student's and the teacher's projection
    ``[B, T, H]`` (``element_bytes`` each: 4 fp32, 2 bf16) and writes lse_s, lse_t and the row KL ``[B·R, T]``
    float32 (then summed: one read); the backward reads both projections and both lse again and writes dX
    ``[B, T, H_s]``. Each projection counted once: a program re-reads its head's key tiles for each of the
    T / 64 row blocks, and those re-reads reach GPU memory only where L2 no longer holds them (an upper bound
    of T / 64 × the projection reads; the programs of one head's row blocks are not launched together).
    """
    scores = batch * relation_heads * length * length * 4
    per_token = batch * length * element_bytes
    rows = batch * relation_heads * length * 4
    forward = per_token * (student_hidden + teacher_hidden) + 4 * rows
    backward = per_token * (student_hidden + teacher_hidden) + 2 * rows + per_token * student_hidden
    return {"torch": len(RELATIONS) * TORCH_PASSES_PER_RELATION * scores, "triton": len(RELATIONS) * (forward + backward)}


def memory_probe(length: int, loss: str) -> dict[str, float]:
    """In this (fresh) process: the peak RSS growth of one relation-loss forward and backward at ``MEMORY_SHAPE``
    and ``length``, the ``torch`` path of compress.relation_loss or the ``textbook`` one. ru_maxrss after the call
    less the RSS just before it (inputs already allocated; libraries warmed up by the same call at length 16)."""
    b, r, hs, ht = (MEMORY_SHAPE[k] for k in ("batch", "relation_heads", "student_hidden", "teacher_hidden"))

    def inputs(t: int):
        gen = torch.Generator().manual_seed(0)
        s = [torch.randn(b, t, hs, generator=gen).requires_grad_() for _ in range(3)]
        te = [torch.randn(b, t, ht, generator=gen) for _ in range(3)]
        mask = torch.ones(b, t, dtype=torch.long)
        mask[: b // 4, t // 2:] = 0  # a quarter of the rows half padding, as the corpus batches
        return s, te, mask

    def run(s, te, mask) -> None:
        value = (naive_relation_loss(s, te, mask, r) if loss == "textbook" else relation_kd_loss(s, te, mask, r)[0])
        value.backward()

    run(*inputs(16))
    s, te, mask = inputs(length)
    page = os.sysconf("SC_PAGE_SIZE")
    rss_before = int(Path("/proc/self/statm").read_text().split()[1]) * page
    run(s, te, mask)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"rss_before_mib": rss_before / 2**20, "peak_rss_mib": peak / 2**20,
            "peak_growth_mib": max(0, peak - rss_before) / 2**20}


def peak_memory_vs_length(json_path: str | None) -> None:
    """--peak-memory-vs-length: one fresh process per length and loss (torch path, textbook), a table."""
    b, r = MEMORY_SHAPE["batch"], MEMORY_SHAPE["relation_heads"]
    rows = []
    for length in MEMORY_LENGTHS:
        row = {"length": length, "score_tensor_mib": b * r * length * length * 4 / 2**20}
        for loss in ("torch", "textbook"):
            out = subprocess.run([sys.executable, __file__, "--memory-probe", str(length), "--memory-probe-loss", loss],
                                 check=True, capture_output=True, text=True).stdout
            row[loss] = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
    print(f"peak RSS growth of one relation-loss forward + backward (Q-Q, K-K, V-V), CPU fp32, batch {b} × "
          f"{r} relation heads, student {MEMORY_SHAPE['student_hidden']} / teacher {MEMORY_SHAPE['teacher_hidden']}; "
          f"a fresh process per cell, ru_maxrss after − RSS before, {torch.get_num_threads()} threads")
    print(f"{'T':>5} {'one [B·R,T,T] fp32':>19} {'torch path':>11} {'textbook':>10}")
    for row in rows:
        print(f"{row['length']:>5} {row['score_tensor_mib']:>15.0f} MiB {row['torch']['peak_growth_mib']:>7.0f} MiB "
              f"{row['textbook']['peak_growth_mib']:>6.0f} MiB")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"peak_memory_vs_length": rows, "shape": MEMORY_SHAPE, "threads": torch.get_num_threads()}, f,
                      indent=2)


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
    ap.add_argument("--phase-steps", type=int, default=5,
                    help="measured steps of the per-phase breakdown per ours variant (0: none)")
    ap.add_argument("--peak-memory-vs-length", action="store_true",
                    help=f"CPU: peak RSS growth of one relation-loss forward + backward at T = "
                         f"{', '.join(map(str, MEMORY_LENGTHS))} (torch path and textbook), then exit")
    ap.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)  # one cell of it, in a fresh process
    ap.add_argument("--memory-probe-loss", choices=("torch", "textbook"), default="torch", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.memory_probe_loss)))
        return
    if args.peak_memory_vs_length:
        peak_memory_vs_length(args.json)
        return
    precision = "bf16" if args.bf16 else args.precision
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")

    device = torch.device(args.device)
    if "ours-triton" in variants:
        resolve_relation_kernel("triton", device)  # a UserError where triton cannot run here
    interpreted = "ours-triton" in variants and device.type != "cuda"
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
    distillation = RelationDistillation(teacher_cut, spec, t_layer, args.relation_heads)  # kernel="torch"
    fused = RelationDistillation(teacher_cut, spec, t_layer, args.relation_heads, kernel="triton")
    distillations = {name: fused if name == "ours-triton" else distillation for name in variants}
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
                loss, _ = distillations[name].loss(partial(forward_to_qkv, student, spec, s_layer), b_ids, b_mask)
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
        c = (fused.loss(partial(forward_to_qkv, reference, spec, s_layer), ids, mask)[0].item()
             if "ours-triton" in variants else None)
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
    result["triton_speedup"] = ratio("ours", "ours-triton")
    result["loss_naive"], result["loss_ours"] = a, b
    if c is not None:
        result["loss_ours_triton"] = c

    # Per phase: a step of the product's path run phase by phase on the fixed batch, the same autocast as step().
    def mark():
        if device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def phased_step(name: str) -> list:
        student, opt, dist = students[name], optims[name], distillations[name]
        opt.zero_grad(set_to_none=True)
        marks = [mark()]
        with autocast(name):
            t_qkv = dist.teacher_qkv(ids, mask)
            marks.append(mark())
            s_qkv = forward_to_qkv(student, spec, s_layer, ids, mask)
            marks.append(mark())
            loss, _ = relation_kd_loss(s_qkv, t_qkv, mask, dist.relation_heads, dist.weights, dist.kernel)
            marks.append(mark())
        grads = torch.autograd.grad(loss, s_qkv)  # the loss's backward, down to the student's Q/K/V
        marks.append(mark())
        torch.autograd.backward(s_qkv, grads)  # the rest: the student's layers
        marks.append(mark())
        opt.step()
        marks.append(mark())
        return marks

    ours = [v for v in variants if v.startswith("ours")]
    phase_marks: dict[str, list[list]] = {name: [] for name in ours}
    if args.phase_steps > 0:
        for name in ours:  # warm-up
            phased_step(name)
        for i in range(args.phase_steps):
            for name in (ours if i % 2 == 0 else ours[::-1]):
                phase_marks[name].append(phased_step(name))
        if device.type == "cuda":
            torch.cuda.synchronize()  # once, after all measured steps

    def elapsed_ms(m0, m1) -> float:
        return m0.elapsed_time(m1) if device.type == "cuda" else (m1 - m0) * 1000

    phases: dict[str, dict] = {}
    for name, steps_marks in phase_marks.items():
        if not steps_marks:
            continue
        ms = {ph: statistics.median(elapsed_ms(m[i], m[i + 1]) for m in steps_marks) for i, ph in enumerate(PHASES)}
        total = sum(ms.values())
        phases[name] = {"ms": ms, "share": {ph: v / total for ph, v in ms.items()}, "step_ms_sum_of_medians": total,
                        "step_ms_median": statistics.median(elapsed_ms(m[0], m[-1]) for m in steps_marks),
                        "relation_loss_share": sum(ms[ph] for ph in LOSS_PHASES) / total}
    if phases:
        result["phases"] = phases
        result["phase_steps"] = args.phase_steps

    # The relation loss's GPU-memory traffic per step: the run's shape and the base shape at T = 128 and 512.
    traffic_shapes = {"run": dict(batch=args.batch_size, length=args.seq_len, relation_heads=args.relation_heads,
                                  student_hidden=args.student_hidden, teacher_hidden=args.teacher_hidden)}
    for length in (128, 512):
        traffic_shapes[f"base_T{length}"] = dict(BASE_SHAPE, length=length)
    result["relation_traffic"] = {
        key: shape | {f"{kind}_{eb * 8}bit_gb": v / 1e9 for eb in (4, 2)
                      for kind, v in relation_traffic_bytes(**shape, element_bytes=eb).items()
                      if kind == "triton" or eb == 4}
        for key, shape in traffic_shapes.items()}
    result["setup"] = {k: v for k, v in vars(args).items() if k != "json"} | {
        "threads": torch.get_num_threads(), "loader_workers": workers, "precision": precision,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}

    print(f"teacher {args.teacher_layers}×{args.teacher_hidden} → student {args.student_layers}×{args.student_hidden}, "
          f"batch {args.batch_size} × {args.seq_len}, {result['setup']['device_name']} {precision}, "
          f"{torch.get_num_threads()} threads, {workers} loader workers")
    print(f"same loss: textbook {a:.6f}  ours {b:.6f}" + (f"  ours-triton {c:.6f}" if c is not None else ""))
    if interpreted:
        print("ours-triton runs under Triton's interpreter on this CPU (TRITON_INTERPRET=1): its times say nothing "
              "about the kernel's speed")
    for name in variants:
        r = result[name]
        mem = f"  peak {r['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in r else ""
        mfu = f"  {r['model_tflops']:.2f} TFLOP/s = {100 * r['mfu']:.0f}% MFU" if "mfu" in r else ""
        print(f"{name:>10}: {r['median_step_s'] * 1000:8.1f} ms/step  {r['tokens_per_s']:10,.0f} tokens/s{mem}{mfu}")
    print("measured matmul rate: " + ", ".join(f"{p} {t:.2f} TFLOP/s" for p, t in result["matmul_tflops"].items()))
    for key, label in (("speedup", "ours / naive"), ("speedup_from_loss", "naive+loss / naive"),
                       ("bf16_speedup", "ours-bf16 / ours"), ("triton_speedup", "ours-triton / ours")):
        if result[key] is not None:
            print(f"speed-up {label}: {result[key]:.2f}× (median of per-round ratios)"
                  + (" (interpreted: not a speed figure)" if key == "triton_speedup" and interpreted else ""))
    if phases:
        clock = "CUDA events" if device.type == "cuda" else "time.perf_counter"
        print(f"\nper phase of one step ({clock}, median of {args.phase_steps} steps on the fixed batch; "
              f"ms and share of the sum of the medians):")
        print(f"{'phase':<13}" + "".join(f"{name:>22}" for name in phases))
        for ph in PHASES:
            print(f"{ph:<13}" + "".join(f"{p['ms'][ph]:>13.1f} ms {100 * p['share'][ph]:>4.0f}%" for p in phases.values()))
        print(f"{'step (sum)':<13}" + "".join(f"{p['step_ms_sum_of_medians']:>13.1f} ms      " for p in phases.values()))
        print(f"{'step (whole)':<13}" + "".join(f"{p['step_ms_median']:>13.1f} ms      " for p in phases.values()))
        print(f"{'relation loss':<13}" + "".join(f"{'':>13}    {100 * p['relation_loss_share']:>4.0f}%"
                                                 for p in phases.values()) + "   (loss fwd + loss bwd)")
    print(f"\nrelation loss GPU-memory traffic per step (forward + backward, Q-Q, K-K, V-V; counted, not measured): "
          f"torch path = {TORCH_PASSES_PER_RELATION} passes per relation over [B·R, T, T] fp32; fused kernel = "
          f"Q/K/V of both models read twice, [B·R, T] fp32 row figures, dX written")
    print(f"{'shape':<44}{'torch':>10}{'triton fp32':>13}{'triton bf16':>13}{'torch / triton bf16':>21}")
    for key, t in result["relation_traffic"].items():
        label = (f"{'this run' if key == 'run' else 'base'}: B {t['batch']}, T {t['length']}, R {t['relation_heads']}, "
                 f"H {t['student_hidden']}/{t['teacher_hidden']}")
        print(f"{label:<44}{t['torch_32bit_gb']:>7.2f} GB{t['triton_32bit_gb']:>10.3f} GB{t['triton_16bit_gb']:>10.3f} GB"
              f"{t['torch_32bit_gb'] / t['triton_16bit_gb']:>20.0f}×")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    tmp.cleanup()


if __name__ == "__main__":
    main()
