"""The distillation data path at scale: memory, start-up, loader and preparation throughput (issue 12).

Every figure is measured by running the product (``compress prepare-data``, ``compress distill``, the
DataLoader of ``compress.loader``) on real multilingual text (chatterbot-corpus, repeated to size) with
the real multilingual-e5-small tokenizer (XLM-R's 250k pieces; ``compress assets build --only e5,chatterbot``).
Speeds are ratios taken within one round of alternating runs, as this machine drifts.

    python benchmarks/data_path.py memory --sizes 0.1,1,4 --work /tmp/dp   # peak RSS of distill per corpus size
    python benchmarks/data_path.py loader                                 # prepared shards vs inline tokenization
    python benchmarks/data_path.py prepare --mb 64                        # per-worker vs the bare tokenizer
    python benchmarks/data_path.py step --baseline ../old-checkout        # demo-shape step, new vs old code

``memory`` prepares each corpus once (timed: the preparation throughput of a whole corpus) and then
measures, for a tiny teacher with the e5 tokenizer, the peak RSS of ``compress distill`` (start-up and
50 steps) and its start-up time (process start to the first finished step).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.assets import registry  # noqa: E402

_MEASURED = """
import resource, sys, threading, time
peak = [0]
def sample():  # anonymous (non-file) resident memory, every 20 ms: what a corpus held in memory would grow
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
from compress.cli import main
sys.argv = ["compress", *sys.argv[1:]]
try:
    main()
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "MAXANON_KB", peak[0], file=sys.stderr)
"""


def chatterbot_lines() -> list[str]:
    files = sorted(glob.glob(registry.path("chatterbot")))
    if not files:
        sys.exit("error: no chatterbot text: run `compress assets build --only e5,chatterbot` first")
    return [line.strip() for f in files for line in open(f, encoding="utf-8") if line.strip()]


def write_text(path: Path, size_bytes: int, lines: list[str], *, paragraph: int = 1, seed: int = 0) -> Path:
    """``size_bytes`` of real text: the lines in shuffled blocks (``paragraph`` lines joined per record)."""
    if path.exists() and path.stat().st_size >= size_bytes:
        return path
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while f.tell() < size_bytes:
            order = lines[:]
            rng.shuffle(order)
            f.write("".join(" ".join(order[i : i + paragraph]) + "\n" for i in range(0, len(order), paragraph)))
    os.replace(tmp, path)
    return path


def tiny_teacher(folder: Path) -> Path:
    """A 4×64 random BERT with multilingual-e5-small's tokenizer: the data path at full vocabulary, a cheap step."""
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(registry.path("e5"))
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                 intermediate_size=256, max_position_embeddings=512))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_measured(args: list, env: dict | None = None) -> tuple[float, float, float]:
    """(peak RSS in MB, peak anonymous RSS in MB, wall seconds) of ``compress ARGS`` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: compress {' '.join(map(str, args[:2]))} failed:\n{proc.stderr[-3000:]}")
    fields = proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()
    return int(fields[0]) / 1024, int(fields[2]) / 1024, wall


def startup_seconds(args: list, run_dir: Path) -> float:
    """Seconds from starting ``compress distill`` to its first finished step (train.log_every=1)."""
    metrics = run_dir / "distill" / "metrics.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "compress.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    while not (metrics.exists() and metrics.stat().st_size):
        if proc.poll() is not None:
            sys.exit(f"error: distill failed: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    proc.wait()
    return seconds


def alternate(measures: dict, rounds: int) -> dict[str, list[float]]:
    """Each measure (a rate) once per round, in turn, for ``rounds`` rounds."""
    rates: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            rates[name].append(measure())
    return rates


def ratio_table(rates: dict[str, list[float]], baseline: str, title: str) -> dict:
    """Print median rates and the median of within-round ratios to ``baseline``; return them."""
    print(f"\n| {title} | tokens/s (median) | vs {baseline} (median of round ratios) |")
    print("|---|---:|---:|")
    out = {}
    for name, values in rates.items():
        ratio = statistics.median(v / w for v, w in zip(values, rates[baseline]))
        out[name] = {"tokens_per_s": statistics.median(values), "ratio": ratio}
        print(f"| {name} | {statistics.median(values) / 1e6:.2f} M | {ratio:.2f}× |")
    return out


def cmd_memory(a) -> dict:
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    lines = chatterbot_lines()
    teacher = tiny_teacher(work / "teacher")
    rows = []
    for gb in [float(s) for s in a.sizes.split(",")]:
        text = write_text(work / f"text-{gb:g}gb.txt", int(gb * 1e9), lines, seed=int(gb * 10))
        prepared = work / f"prepared-{gb:g}gb"
        prep_rss, prep_anon, prep_wall = (0.0, 0.0, 0.0) if (prepared / "prepared.json").exists() and not a.reprepare else run_measured(
            ["prepare-data", "--teacher", teacher, "--corpus", text, "--out", prepared, "--max-length", "128",
             "--workers", str(a.workers)])
        meta = json.loads((prepared / text.name.split(".")[0] / "corpus.json").read_text())
        common = ["distill", "--teacher", teacher, "--corpus", prepared, "--layers", "2", "--hidden", "64", "--heads", "4",
                  "--batch-size", "32", "--max-length", "128", "--relation-heads", "8", "--device", "cpu"]
        run = work / f"run-{gb:g}gb"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        rss, anon, wall = run_measured([*common, "--run-dir", run, "--steps", "50", "train.log_every=10"])
        subprocess.run(["rm", "-rf", str(run)], check=True)
        startup = startup_seconds([*common, "--run-dir", run, "--steps", "1", "train.log_every=1"], run)
        rows.append({"corpus_gb": gb, "text_bytes": text.stat().st_size, "tokens": meta["stats"]["tokens"],
                     "sequences": meta["stats"]["sequences"], "prepare_wall_s": round(prep_wall, 1),
                     "prepare_peak_rss_mb": round(prep_rss), "prepare_peak_anon_mb": round(prep_anon),
                     "prepare_tokens_per_s": meta["tokens_per_s"], "prepare_seconds": meta["seconds"],
                     "distill_peak_rss_mb": round(rss), "distill_peak_anon_mb": round(anon),
                     "distill_50_steps_wall_s": round(wall, 1),
                     "startup_to_first_step_s": round(startup, 2)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["distill_peak_rss_mb"]
    print("\n| corpus | tokens | prepare: s, tokens/s, peak RSS (anon) | distill, 50 steps: peak RSS (anon) | vs smallest | start-up to first step |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['corpus_gb']:g} GB | {r['tokens'] / 1e6:,.0f} M | {r['prepare_seconds']:,.0f} s, "
              f"{(r['prepare_tokens_per_s'] or 0) / 1e6:.2f} M/s, {r['prepare_peak_rss_mb']} ({r['prepare_peak_anon_mb']}) MB | "
              f"{r['distill_peak_rss_mb']} ({r['distill_peak_anon_mb']}) MB | {r['distill_peak_rss_mb'] - base:+d} MB | "
              f"{r['startup_to_first_step_s']:.1f} s |")
    return {"memory": rows}


def cmd_loader(a) -> dict:
    """Batches of 256 × 128 from prepared shards (DataLoader, 0 and 2 workers) against today's inline path
    (sample lines, tokenize with padding and truncation in the training process), alternating rounds."""
    import torch
    from transformers import AutoTokenizer

    from compress.corpus import MixedSampler
    from compress.loader import ShardBatches, batches, make_loader
    from compress.prepare_data import PrepareSettings, prepare_corpus, tokenizer_spec
    from compress.token_shards import TokenCorpus

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    lines = chatterbot_lines()
    # Paragraphs of 12 lines: most records fill a 128-token window, as web or book text does.
    text = write_text(work / "loader-text.txt", a.mb << 20, lines, paragraph=12)
    records = [line.rstrip("\n") for line in open(text, encoding="utf-8")]
    tokenizer = AutoTokenizer.from_pretrained(registry.path("e5"))
    spec = tokenizer_spec(tokenizer)
    corpus = TokenCorpus(prepare_corpus(text, work / "loader-prepared", spec, PrepareSettings(max_length=128), workers=2))
    sampler = MixedSampler([len(corpus)], [1.0], 0.3, seed=0)
    line_sampler = MixedSampler([len(records)], [1.0], 0.3, seed=0)
    n = a.batches

    def shards(workers: int) -> float:
        data = ShardBatches([corpus], sampler, 256, 1, 0, 0, n, tokenizer.pad_token_id)
        t0, tokens = time.perf_counter(), 0
        for batch in batches(make_loader(data, workers, torch.device("cpu"))):
            tokens += batch["tokens"]
        return tokens / (time.perf_counter() - t0)

    def inline() -> float:
        t0, tokens = time.perf_counter(), 0
        for step in range(n // 8):
            texts = line_sampler.lines([records], 256, step)
            enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            tokens += int(enc["attention_mask"].sum())
        return tokens / (time.perf_counter() - t0)

    # The alternative format: the same sequences as an Arrow table through HF datasets (memory-mapped too).
    import datasets

    arrow_dir = work / "loader-arrow"
    if not arrow_dir.exists():
        rows = [corpus[i].tolist() for i in range(len(corpus))]
        datasets.Dataset.from_dict({"input_ids": rows}).save_to_disk(str(arrow_dir))
        del rows
    table = datasets.load_from_disk(str(arrow_dir)).with_format("numpy")

    def arrow() -> float:
        from compress.loader import pad_rows

        t0, tokens = time.perf_counter(), 0
        for step in range(n):
            _, index = sampler.draw(256, step)
            ids, mask = pad_rows(list(table[index.tolist()]["input_ids"]), tokenizer.pad_token_id)
            tokens += int(mask.sum())
        return tokens / (time.perf_counter() - t0)

    rates = alternate({"shards, 0 workers": lambda: shards(0), "shards, 2 workers": lambda: shards(2),
                       "Arrow (datasets), in process": arrow, "inline tokenization": inline}, a.rounds)
    return {"loader": ratio_table(rates, "inline tokenization", "path (batch 256 × 128, real tokens)")}


def cmd_prepare(a) -> dict:
    """Tokens/s of one preparation worker (read, tokenize, window, write) against the bare fast tokenizer
    (reading the lines and ``encode_batch_fast`` alone) on the same text, in one process each, alternating
    rounds; then two workers."""
    import shutil

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from compress.prepare_data import PrepareSettings, prepare_corpus, tokenizer_spec

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    text = write_text(work / f"prepare-{a.mb}mb.txt", a.mb << 20, chatterbot_lines(), seed=3)
    spec = tokenizer_spec(AutoTokenizer.from_pretrained(registry.path("e5")))
    bare = Tokenizer.from_str(spec.json)
    bare.no_truncation()
    bare.no_padding()
    encode = getattr(bare, "encode_batch_fast", bare.encode_batch)  # the fastest bare call, as ours uses

    def bare_rate() -> float:
        t0, tokens, chunk, chars = time.perf_counter(), 0, [], 0
        with open(text, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                chunk.append(line)
                chars += len(line)
                if chars >= 1 << 20:
                    tokens += sum(len(e.ids) for e in encode(chunk, add_special_tokens=False))
                    chunk, chars = [], 0
        tokens += sum(len(e.ids) for e in encode(chunk, add_special_tokens=False))
        return tokens / (time.perf_counter() - t0)

    def ours(workers: int) -> float:
        target = work / f"prepare-out-{workers}"
        shutil.rmtree(target, ignore_errors=True)
        prepare_corpus(text, target, spec, PrepareSettings(max_length=128), workers=workers)
        stats = json.loads((target / "corpus.json").read_text())
        content = stats["stats"]["tokens"] - stats["stats"]["sequences"] * 2  # the same count as the bare run
        return content / stats["seconds"]

    import compress.prepare_data as prepare

    prepare.INLINE_BYTES = 0  # two workers even for a sample
    rates = alternate({"bare tokenizer": bare_rate, "ours, 1 worker": lambda: ours(1),
                       "ours, 2 workers": lambda: ours(2)}, a.rounds)
    return {"prepare": ratio_table(rates, "bare tokenizer", f"{a.mb} MB of text (content tokens)")}


def cmd_step(a) -> dict:
    """The demo's distillation (multilingual-e5-small → 6×384, batch 32 × 64) on this code and on an older
    checkout (``--baseline``), alternating runs: seconds per optimiser step (the training loop's wall time
    over its steps, start-up excluded) and real tokens/s. The two sample their own batches (this code
    samples windows of long lines where the old one truncated them), so compare over enough steps."""
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    preset = ROOT / "configs" / "distill" / "demo-multilingual.yaml"
    corpus = registry.path("chatterbot")

    def one_run(src: Path, name: str, extra: list[str] = ()) -> dict[str, float]:
        run = work / f"step-{name}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        args = ["distill", "--config", str(preset), "--teacher", registry.path("e5"), "--corpus", corpus,
                "--run-dir", str(run), "--steps", str(a.steps), "train.log_every=5", "--device", "cpu",
                f"train.precision={a.precision}", *extra]
        env = {**os.environ, "PYTHONPATH": str(src)}
        proc = subprocess.run([sys.executable, "-m", "compress.cli", *args], cwd=src, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"error: {name} failed: {proc.stderr[-2000:]}")
        wall = json.loads((run / "manifest.json").read_text())["stages"]["distill"]["metrics"]["wall_s"]
        rates = [json.loads(l)["tokens_per_s"] for l in (run / "distill" / "metrics.jsonl").read_text().splitlines()]
        return {"s_per_step": wall / a.steps, "tokens_per_s": statistics.median(rates[1:])}

    baseline = Path(a.baseline).resolve()
    rows: dict[str, list[dict[str, float]]] = {"this checkout": [], "baseline": []}
    for i in range(a.rounds):  # the order flips every round: a run can be favoured by going first or second
        for name in (("this checkout", "baseline") if i % 2 == 0 else ("baseline", "this checkout")):
            rows[name].append(one_run(ROOT, "new", a.override) if name == "this checkout" else one_run(baseline, "old"))
    speed = statistics.median(o["s_per_step"] / n["s_per_step"] for n, o in zip(rows["this checkout"], rows["baseline"]))
    tokens = statistics.median(n["tokens_per_s"] / o["tokens_per_s"] for n, o in zip(rows["this checkout"], rows["baseline"]))
    print(f"\ndemo-shape distillation on CPU ({a.precision}, {a.steps} steps a run, {a.rounds} rounds"
          f"{', this checkout with ' + ' '.join(a.override) if a.override else ''}):")
    for name, runs in rows.items():
        print(f"  {name}: {statistics.median(r['s_per_step'] for r in runs):.3f} s/step, "
              f"{statistics.median(r['tokens_per_s'] for r in runs):,.0f} real tokens/s")
    print(f"  steps/s this checkout vs baseline: {speed:.3f}; real tokens/s: {tokens:.3f} (medians of round ratios)")
    return {"step": {**rows, "steps_per_s_ratio": speed, "tokens_per_s_ratio": tokens}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("memory", "loader", "prepare", "step"):
        p = sub.add_parser(name)
        p.add_argument("--work", default="/tmp/relation-compress-data-path")
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--json", help="also write the figures here")
    sub.choices["memory"].add_argument("--sizes", default="0.1,1,4", help="corpus sizes in GB")
    sub.choices["memory"].add_argument("--workers", type=int, default=2)
    sub.choices["memory"].add_argument("--reprepare", action="store_true")
    sub.choices["loader"].add_argument("--mb", type=int, default=64)
    sub.choices["loader"].add_argument("--batches", type=int, default=200)
    sub.choices["prepare"].add_argument("--mb", type=int, default=32)
    sub.choices["step"].add_argument("--baseline", required=True, help="a checkout of the code to compare with")
    sub.choices["step"].add_argument("--steps", type=int, default=20)
    sub.choices["step"].add_argument("--precision", default="fp32")
    sub.choices["step"].add_argument("--override", nargs="*", default=[],
                                     help="key=value for this checkout's runs only (data.long_lines=truncate: the old batches)")
    a = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = {"memory": cmd_memory, "loader": cmd_loader, "prepare": cmd_prepare, "step": cmd_step}[a.command](a)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
