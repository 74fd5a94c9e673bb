"""Timing a Hugging Face encoder in PyTorch (``compress bench --torch``), the way it would be served:
``inference_mode``, eval mode, inputs already on the device, CUDA synchronised inside the timed call; and the same
request end to end (text in, the fast tokenizer, the model, pooling and normalization, the embedding on the host)."""

from __future__ import annotations

import functools

import torch

from bench.encoders import sentence_pooling
from bench.ort_session import make_feeds, request_texts
from bench.timing import TimedCall
from compress.config import BenchConfig
from compress.pooling import mean_pool


def _load(variant):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(variant.path).eval()
    if variant.precision == "bf16":
        model.to(torch.bfloat16)
    return model, AutoTokenizer.from_pretrained(variant.path)


def parameter_count(folder) -> int:
    """Elements in the weights of the Hugging Face folder's base model."""
    from transformers import AutoModel

    return sum(p.numel() for p in AutoModel.from_pretrained(folder).parameters())


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
        if cfg.threads:
            torch.set_num_threads(cfg.threads)  # the count every runtime runs at (also what the CPU side uses on cuda)
        used = [f"torch {torch.__version__} {device.type}"]
        pooling = sentence_pooling(variant.path)
        for seq_len in cfg.seq_lengths:
            for batch in cfg.batch_sizes:
                feeds = {k: torch.from_numpy(v).to(device) for k, v in make_feeds(tokenizer, texts, batch, seq_len, names).items()}
                request = functools.partial(_request, model, tokenizer, request_texts(tokenizer, texts, batch, seq_len),
                                            seq_len, device, *pooling)
                calls.append(TimedCall(provider, batch, seq_len, functools.partial(_infer, model, feeds, device), used,
                                       request))
    return calls


def _request(model, tokenizer, texts: list[str], seq_len: int, device: torch.device, mode: str,
             normalize: bool):
    """One request end to end: B texts → the fast tokenizer (truncated at ``seq_len``, padded to the longest) →
    the model → ``[B, H]`` float32 pooled by ``mode`` (mean, cls, max), L2-normalized if asked, on the host."""
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=seq_len, return_tensors="pt").to(device)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if mode == "cls":
            out = hidden[:, 0].float()
        elif mode == "max":
            out = hidden.float().masked_fill(mask[..., None] == 0, float("-inf")).amax(1)
        else:
            out = mean_pool(hidden, mask)
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu().numpy()  # the copy back waits for the GPU


def _infer(model, feeds: dict[str, torch.Tensor], device: torch.device) -> None:
    with torch.inference_mode():
        model(**feeds)
    if device.type == "cuda":
        torch.cuda.synchronize()
