"""Distillation step speed: this implementation against a naive one, side by side in one run.

naive:      both models run to the end (all layers, pooler), Q/K/V recomputed from the full outputs'
            hidden states, relations and KL written the textbook way (softmax, masked_fill, F.kl_div).
naive+loss: the same full forwards, with ``compress.relation_loss`` (isolates the loss's share).
ours:       the teacher stops at the chosen layer's projections (layers above deleted), the student at
            its last layer's projections, relations by ``compress.relation_loss`` (blocked, recomputing
            backward: no ``[B·R, T, T]`` tensor is kept for autograd).

Both do a full optimiser step (forward, backward, AdamW) on the same batches; the two are timed in
alternation so that machine noise hits both alike. Prints tokens/s of each and the ratio.

    python bench/distill_speed.py                       # CPU: 12×384 teacher → 6×384 student
    python bench/distill_speed.py --device cuda --batch-size 256 --teacher-hidden 768 --bf16
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from compress.architectures import arch_spec, qkv_modules
from compress.qkv_capture import drop_layers_above, forward_to_qkv
from compress.relation_loss import relation_kd_loss


VARIANTS = ("naive", "naive+loss", "ours")


def naive_relation_loss(s_qkv, t_qkv, mask, r):
    """The textbook MiniLMv2 loss: per relation softmax / log-softmax with masked_fill, then F.kl_div."""
    total = 0.0
    valid = mask.bool()
    for s, t in zip(s_qkv, t_qkv):
        rels = []
        for x in (s, t):
            b, n, h = x.shape
            x = x.float().view(b, n, r, h // r).transpose(1, 2)
            scores = x @ x.transpose(-1, -2) / math.sqrt(h // r)
            rels.append(scores.masked_fill(~valid[:, None, None, :], float("-inf")))
        log_p_s = F.log_softmax(rels[0], -1)
        p_t = F.softmax(rels[1], -1)
        kl = F.kl_div(log_p_s.masked_fill(~valid[:, None, None, :], 0), p_t, reduction="none").sum(-1)
        total = total + (kl * valid[:, None, :]).sum() / (valid.sum() * r)
    return total


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
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    ap.add_argument("--steps-per-round", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for both")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

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
    drop_layers_above(teacher_cut, spec, args.teacher_layers - 1)
    students = {name: bert(args.student_layers, args.student_hidden) for name in VARIANTS}
    for name in VARIANTS[1:]:
        students[name].load_state_dict(students["naive"].state_dict())
    optims = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, m in students.items()}

    ids = torch.randint(5, args.vocab, (args.batch_size, args.seq_len), device=device)
    mask = torch.ones_like(ids)
    mask[: args.batch_size // 4, args.seq_len // 2:] = 0  # a quarter of the batch half padded
    t_layer, s_layer = args.teacher_layers - 1, args.student_layers - 1
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step(name: str) -> None:
        student, opt = students[name], optims[name]
        opt.zero_grad(set_to_none=True)
        with autocast:
            if name in ("naive", "naive+loss"):
                with torch.no_grad():
                    t = naive_qkv(teacher_full, spec, t_layer, ids, mask)
                s = naive_qkv(student, spec, s_layer, ids, mask)
                if name == "naive":
                    loss = naive_relation_loss(s, t, mask, args.relation_heads)
                else:
                    loss, _ = relation_kd_loss(s, t, mask, args.relation_heads)
            else:
                with torch.inference_mode():
                    t = forward_to_qkv(teacher_cut, spec, t_layer, ids, mask)
                t = tuple(x.clone() for x in t)  # leave inference mode's tensors behind
                loss, _ = relation_kd_loss(forward_to_qkv(student, spec, s_layer, ids, mask), t, mask, args.relation_heads)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    # Same numbers first: both implementations compute the same loss on the same weights (no dropout).
    for student in students.values():
        student.eval()
    with torch.no_grad(), autocast:
        t = naive_qkv(teacher_full, spec, t_layer, ids, mask)
        s = naive_qkv(students["naive"], spec, s_layer, ids, mask)
        a = naive_relation_loss(s, t, mask, args.relation_heads).item()
        b = relation_kd_loss(forward_to_qkv(students["ours"], spec, s_layer, ids, mask),
                             forward_to_qkv(teacher_cut, spec, t_layer, ids, mask), mask, args.relation_heads)[0].item()
    for student in students.values():
        student.train()
    for name in VARIANTS:  # warm-up
        step(name)

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    peak_mem: dict[str, int] = {}
    for _ in range(args.rounds):
        for name in VARIANTS:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(args.steps_per_round):
                step(name)
            times[name].append((time.perf_counter() - t0) / args.steps_per_round)
            if device.type == "cuda":
                peak_mem[name] = max(peak_mem.get(name, 0), torch.cuda.max_memory_allocated())
    tokens = int(mask.sum())
    result = {name: {"median_step_s": statistics.median(v), "tokens_per_s": tokens / statistics.median(v)}
              for name, v in times.items()}
    for name in VARIANTS:
        if name in peak_mem:
            result[name]["peak_memory_gib"] = peak_mem[name] / 2**30
    rate = matmul_rate(device, torch.bfloat16 if args.bf16 else torch.float32)
    flops = step_flops(args, args.seq_len)
    result["matmul_tflops"] = rate / 1e12
    result["ours"]["model_tflops"] = flops / result["ours"]["median_step_s"] / 1e12
    result["ours"]["mfu"] = result["ours"]["model_tflops"] * 1e12 / rate
    result["speedup"] = result["naive"]["median_step_s"] / result["ours"]["median_step_s"]
    result["speedup_from_loss"] = result["naive"]["median_step_s"] / result["naive+loss"]["median_step_s"]
    result["loss_naive"], result["loss_ours"] = a, b
    result["setup"] = {k: v for k, v in vars(args).items() if k != "json"} | {"threads": torch.get_num_threads()}

    print(f"teacher {args.teacher_layers}×{args.teacher_hidden} → student {args.student_layers}×{args.student_hidden}, "
          f"batch {args.batch_size} × {args.seq_len}, {args.device}{' bf16' if args.bf16 else ''}, "
          f"{torch.get_num_threads()} threads")
    print(f"same loss: naive {a:.6f}  ours {b:.6f}")
    for name in VARIANTS:
        r = result[name]
        mem = f"  peak {r['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in r else ""
        print(f"{name:>10}: {r['median_step_s'] * 1000:8.1f} ms/step  {r['tokens_per_s']:10,.0f} tokens/s{mem}")
    print(f"ours: {result['ours']['model_tflops']:.2f} model TFLOP/s = {100 * result['ours']['mfu']:.0f}% of the measured "
          f"{'bf16' if args.bf16 else 'fp32'} matmul rate ({result['matmul_tflops']:.2f} TFLOP/s)")
    print(f"speed-up ours / naive: {result['speedup']:.2f}×  (the loss alone: {result['speedup_from_loss']:.2f}×)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
