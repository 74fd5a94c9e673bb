"""Timing a Hugging Face encoder in PyTorch (``compress bench --torch``), the way it would be served:
``inference_mode``, eval mode, inputs already on the device, CUDA synchronised inside the timed call."""

from __future__ import annotations

import torch

from bench.ort_session import make_feeds
from bench.timing import ShapeSamples, time_calls
from compress.config import BenchConfig


def _load(variant):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(variant.path).eval()
    if variant.precision == "bf16":
        model.to(torch.bfloat16)
    return model, AutoTokenizer.from_pretrained(variant.path)


def parameter_count(variant) -> int:
    model, _ = _load(variant)
    return sum(p.numel() for p in model.parameters())


def time_torch(variant, cfg: BenchConfig, texts: list[str], *, min_time_s: float, min_runs: int) -> list[ShapeSamples]:
    """One timing round of a PyTorch variant: provider ``cpu`` on the CPU, ``cuda`` on the GPU."""
    model, tokenizer = _load(variant)
    names = ("input_ids", "attention_mask") + (("token_type_ids",) if model.config.type_vocab_size > 1 else ())
    rounds = []
    for provider in cfg.providers:
        if provider == "tensorrt":
            continue  # TensorRT is an ONNX Runtime provider; PyTorch is measured on cpu and cuda
        if variant.precision == "bf16" and provider != "cuda":
            continue
        device = torch.device("cuda" if provider == "cuda" else "cpu")
        model.to(device)
        if cfg.threads and device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        for seq_len in cfg.seq_lengths:
            for batch in cfg.batch_sizes:
                feeds = {k: torch.from_numpy(v).to(device) for k, v in make_feeds(tokenizer, texts, batch, seq_len, names).items()}

                def call():
                    with torch.inference_mode():
                        model(**feeds)
                    if device.type == "cuda":
                        torch.cuda.synchronize()

                seconds = time_calls(call, warmup=cfg.warmup, min_time_s=min_time_s, min_runs=min_runs)
                rounds.append(ShapeSamples(provider, batch, seq_len, seconds, [f"torch {torch.__version__} {device.type}"]))
    return rounds
