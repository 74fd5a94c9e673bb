"""Fine-tuning step speed: fp32 against bf16 autocast, side by side in alternating rounds (a CPU question).

A model folder (a run's ``student/``) gets a fresh classification head for the task's labels, and each variant
runs the product's step: the task's train texts tokenized as ``compress finetune`` does (batch 32, padded to the
longest, cut at the task's length), forward and loss under ``compress.train_loop.autocast_context``, backward,
gradient clipping, fused AdamW from ``train_loop.make_optimizer``. Both variants train one copy of the model each,
on the same batches, in rounds whose order flips; printed: ms per step (median over rounds) and the median
within-round ratio fp32 / bf16.

    python benchmarks/finetune_speed.py runs/demo/student [--task sentiment-en] [--rounds 5] [--steps-per-round 4]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch


def main() -> None:
    from bench.finetune import load_classifier, train_batch, train_labels
    from bench.tasks import load_task
    from compress.config import TrainConfig
    from compress.train_loop import autocast_context, make_optimizer
    from export.isa import cpu_features

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model folder, e.g. runs/demo/student")
    ap.add_argument("--task", default="sentiment-en")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps-per-round", type=int, default=4)
    a = ap.parse_args()

    torch.manual_seed(0)
    task = load_task(a.task)
    rows = task.rows("train")
    texts = task.texts(rows)
    pairs = task.texts(rows, task.text_pair_field) if task.text_pair_field else None
    labels, label_ids = train_labels(task, rows)
    base, tokenizer = load_classifier(a.model, labels)
    order = np.random.default_rng(0).permutation(len(rows))
    device = torch.device("cpu")
    variants = {}
    for precision in ("fp32", "bf16"):
        model = copy.deepcopy(base).train()
        variants[precision] = (model, make_optimizer(model, TrainConfig(lr=1e-5, batch_size=a.batch_size)))

    def batch(step: int):
        index = order[step * a.batch_size:(step + 1) * a.batch_size].tolist()
        return train_batch(tokenizer, texts, pairs, index, task.max_length), label_ids[index]

    def step(precision: str, number: int) -> None:
        model, optimizer = variants[precision]
        optimizer.zero_grad(set_to_none=True)
        enc, y = batch(number)
        with autocast_context(device, precision):
            loss = model(**enc, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for precision in variants:  # warm-up: first steps allocate the optimizer state
        step(precision, 0)
    times: dict[str, list[float]] = {p: [] for p in variants}
    for r in range(a.rounds):
        for precision in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            start = time.perf_counter()
            for s in range(a.steps_per_round):
                step(precision, 1 + r * a.steps_per_round + s)
            times[precision].append((time.perf_counter() - start) / a.steps_per_round * 1e3)
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{p} {times[p][-1]:.0f} ms/step" for p in variants), flush=True)

    ratio = statistics.median(f / b for f, b in zip(times["fp32"], times["bf16"]))
    print(f"\n{cpu_features().get('model')}, {torch.get_num_threads()} threads, {a.model}, {a.task}, batch "
          f"{a.batch_size}, length ≤ {task.max_length}; medians of {a.rounds} rounds of {a.steps_per_round} steps")
    print(f"fp32 {statistics.median(times['fp32']):.0f} ms/step, bf16 {statistics.median(times['bf16']):.0f} ms/step, "
          f"fp32 / bf16 {ratio:.2f}×")


if __name__ == "__main__":
    main()
