"""Timing a Hugging Face encoder in PyTorch (``compress bench --torch``), the way it would be served:
``inference_mode``, eval mode, inputs already on the device, CUDA synchronised inside the timed call."""

from __future__ import annotations

import functools

import torch

from bench.ort_session import make_feeds
from bench.timing import TimedCall
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


def torch_calls(variant, cfg: BenchConfig, texts: list[str]) -> list[TimedCall]:
    """A PyTorch variant ready to time: provider ``cpu`` on the CPU, ``cuda`` on the GPU (a model per device)."""
    calls = []
    for provider in cfg.providers:
        if provider == "tensorrt":
            continue  # TensorRT is an ONNX Runtime provider; PyTorch is measured on cpu and cuda
        if variant.precision == "bf16" and provider != "cuda":
            continue
        model, tokenizer = _load(variant)
        names = ("input_ids", "attention_mask") + (("token_type_ids",) if model.config.type_vocab_size > 1 else ())
        device = torch.device("cuda" if provider == "cuda" else "cpu")
        model.to(device)
        if cfg.threads and device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        used = [f"torch {torch.__version__} {device.type}"]
        for seq_len in cfg.seq_lengths:
            for batch in cfg.batch_sizes:
                feeds = {k: torch.from_numpy(v).to(device) for k, v in make_feeds(tokenizer, texts, batch, seq_len, names).items()}
                calls.append(TimedCall(provider, batch, seq_len, functools.partial(_infer, model, feeds, device), used))
    return calls


def _infer(model, feeds: dict[str, torch.Tensor], device: torch.device) -> None:
    with torch.inference_mode():
        model(**feeds)
    if device.type == "cuda":
        torch.cuda.synchronize()
