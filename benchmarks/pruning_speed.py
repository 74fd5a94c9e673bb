"""student.init=teacher at the base shape: how long cutting a 6×384 student out of a random 12×768 BERT takes on
this machine, and whether the calibration pass's memory grows with the corpus.

Each measurement runs in a fresh process (its peak RSS is its own): a token corpus of N sequences of 128 tokens
is written as shards (memory-mapped on reading), then compress.distill.calibration_batches draws the calibration
sample and compress.pruning.init_from_teacher ranks and cuts. Printed: wall seconds of each phase and the peak
RSS, per corpus size and criterion.

    python benchmarks/pruning_speed.py [--sizes 10000,1000000] [--calibration 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_MEASURED = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np, torch
from transformers import BertConfig, BertModel
from compress.architectures import arch_spec
from compress.distill import calibration_batches
from compress.pruning import init_from_teacher
from compress.student import build_student, student_config
from compress.token_shards import TokenCorpus

folder, criterion, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))
spec = arch_spec("bert")
torch.manual_seed(0)
teacher = BertModel(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               intermediate_size=3072)).eval()
student = build_student(student_config(teacher.config, spec, layers=6, hidden=384, heads=6), seed=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
batches = calibration_batches([TokenCorpus(folder)], count, 0, seed=0) if criterion == "activation" else None
t1 = time.perf_counter()
plan = init_from_teacher(student, teacher, spec, teacher_layers=None, criterion=criterion, batches=batches)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"sample_s": round(t1 - t0, 2), "prune_s": round(t2 - t1, 2), "peak_rss_mb": round(peak / 1024),
                  "rss_growth_mb": round((peak - base) / 1024), "calibration": plan.calibration}))
"""


def write_corpus(folder: Path, sequences: int, length: int = 128, vocab: int = 30522) -> Path:
    """A prepared corpus of ``sequences`` random sequences, written shard by shard (flat memory)."""
    from compress.token_shards import CORPUS_JSON, FORMAT, FORMAT_VERSION, ShardWriter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    writer = ShardWriter(folder, 0, np.uint16)
    for start in range(0, sequences, 10_000):
        n = min(10_000, sequences - start)
        writer.add(rng.integers(5, vocab, n * length, dtype=np.uint16), np.full(n, length))
    shard = writer.close()
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "complete": True, "dtype": "uint16", "vocab_size": vocab,
            "max_length": length, "shards": [shard]}
    (folder / CORPUS_JSON).write_text(json.dumps(meta))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,1000000", help="corpus sizes in sequences of 128 tokens")
    ap.add_argument("--calibration", type=int, default=256, help="student.calibration_sequences")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in map(int, a.sizes.split(",")):
            corpus = write_corpus(Path(tmp) / f"c{size}", size)
            for criterion in ("activation", "magnitude"):
                proc = subprocess.run([sys.executable, "-c", _MEASURED, str(corpus), criterion, str(a.calibration),
                                       str(a.threads)], capture_output=True, text=True, check=True)
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append({"corpus_sequences": size, "corpus_mb": round(size * 128 * 2 / 2**20), "criterion": criterion,
                             **result})
                print(json.dumps(rows[-1]), flush=True)
    print("\ncorpus (sequences × 128)  criterion    sample s  prune s  peak RSS MB  RSS growth MB")
    for r in rows:
        print(f"{r['corpus_sequences']:>24,}  {r['criterion']:<11} {r['sample_s']:>8}  {r['prune_s']:>7}  "
              f"{r['peak_rss_mb']:>11}  {r['rss_growth_mb']:>13}")


if __name__ == "__main__":
    main()
