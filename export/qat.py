"""Quantization-aware retraining with the distillation's relation loss; the fake quantization of ONNX Runtime's
dynamic INT8 (NNCF's, for OpenVINO, is in :mod:`export.openvino_qat`).

``prepare(model)`` makes every Linear in the encoder layers compute what ONNX Runtime's dynamic INT8 graph
will compute: weights fake-quantized per output channel, symmetric INT8 ([-127, 127], or ORT's reduced
[-64, 64] on CPUs without VNNI), and inputs fake-quantized per tensor to asymmetric UINT8 with the range of
the actual batch (``DynamicQuantizeLinear``); with ``embeddings``, the embedding lookups as ORT's INT8
tables give them (export's ``quantize_embeddings``). Gradients pass straight through the rounding. ``convert``
removes all of it again: the weights stay float, and the ordinary FP32 export followed by ORT's dynamic
quantization then produces the model that was trained. The model's code is never edited (torchtune's
prepare()/convert() habit).

Why not torchao's PT2E QAT flow: on HF BERT graphs (torch 2.13, torchao 0.18) ``prepare_qat_pt2e`` with
``X86InductorQuantizer(is_qat=True)`` fails in its Linear+GELU annotation (IndexError in
``_get_output_nodes_of_partitions``); and our measurements (docs/benchmarks.md) show ORT's dynamic INT8 to
be both faster and far more faithful than static QDQ on this CPU, so QAT targets the dynamic path.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from compress.architectures import ArchSpec, layer_list
from compress.pooling import mean_pool


def fake_quant_weight(weight: torch.Tensor, reduce_range: bool = False) -> torch.Tensor:
    """``[out, in]`` → the same values rounded to per-row symmetric INT8 (ORT's per-channel QInt8)."""
    qmax = 64 if reduce_range else 127
    scale = (weight.detach().abs().amax(dim=1) / qmax).clamp_min(torch.finfo(torch.float32).tiny)
    zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero, 0, -qmax, qmax)


def _uint8_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of ONNX Runtime's asymmetric UINT8 over ``x``'s range including 0 (scalars)."""
    lo = x.detach().min().clamp(max=0).float()
    hi = x.detach().max().clamp(min=0).float()
    scale = ((hi - lo) / 255).clamp_min(torch.finfo(torch.float32).tiny)
    return scale, torch.round(-lo / scale).clamp(0, 255).to(torch.int32)


def fake_quant_activation(x: torch.Tensor) -> torch.Tensor:
    """Any shape → rounded as ``DynamicQuantizeLinear`` would: per tensor, asymmetric UINT8, range incl. 0."""
    return torch.fake_quantize_per_tensor_affine(x, *_uint8_range(x), 0, 255)


class _WeightFakeQuant(nn.Module):
    def __init__(self, reduce_range: bool):
        super().__init__()
        self.reduce_range = reduce_range

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(weight, self.reduce_range)


def _input_fake_quant(_module, args):
    return (fake_quant_activation(args[0]), *args[1:])


def fake_quant_rows(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rows looked up from ``table`` [V, H] → rounded as ORT stores a quantized embedding table: per table,
    asymmetric UINT8 over the whole table's range incl. 0 (``quantize_embeddings``: Gather + DequantizeLinear).
    Rounding the looked-up rows with the table's scale equals rounding the table, without touching all of it."""
    return torch.fake_quantize_per_tensor_affine(rows, *_uint8_range(table), 0, 255)


def _embedding_fake_quant(module, _args, output):
    return fake_quant_rows(output, module.weight)


@dataclass
class QATState:
    """What ``prepare`` attached, so that ``convert`` can take it off again."""

    linears: list[nn.Linear] = field(default_factory=list)
    hooks: list = field(default_factory=list)


def prepare(model: nn.Module, spec: ArchSpec, *, reduce_range: bool = False, embeddings: bool = False) -> QATState:
    """Fake-quantize every Linear of the encoder layers in place (what ORT quantizes: the MatMuls with weights),
    and with ``embeddings`` every embedding lookup too (the export's ``quantize_embeddings``)."""
    state = QATState()
    if embeddings:  # ORT quantizes every Gather from a table: word, position and token-type embeddings
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                state.hooks.append(module.register_forward_hook(_embedding_fake_quant))
    for layer in layer_list(model, spec):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                parametrize.register_parametrization(module, "weight", _WeightFakeQuant(reduce_range))
                state.hooks.append(module.register_forward_pre_hook(_input_fake_quant))
                state.linears.append(module)
    return state


def convert(state: QATState) -> None:
    """Remove the fake quantization; the trained float weights stay in place."""
    for hook in state.hooks:
        hook.remove()
    for linear in state.linears:
        parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)


@contextlib.contextmanager
def fake_quantized(model: nn.Module, spec: ArchSpec, *, reduce_range: bool = False,
                   embeddings: bool = False) -> Iterator[nn.Module]:
    """``model`` fake-quantized as ORT's dynamic INT8 (:func:`prepare`) inside the block, plain again after it."""
    state = prepare(model, spec, reduce_range=reduce_range, embeddings=embeddings)
    try:
        yield model
    finally:
        convert(state)


def retrain(
    student: nn.Module,
    reference: nn.Module,
    *,
    spec: ArchSpec,
    reference_spec: ArchSpec,
    reference_layer: int,
    tokenizer,
    lines: list[str],
    relation_heads: int,
    cfg,
    out_dir,
    output_weight: float,
    embedding_weight: float,
    max_length: int,
    resume: bool = False,
) -> dict[str, float]:
    """Retrain ``student`` (in place) against a frozen FP32 ``reference``; returns the last metrics. The caller
    fake-quantizes the student first: :func:`fake_quantized` for ORT's dynamic INT8, or NNCF's quantizers
    (:func:`export.openvino_qat.quantize_for_training`), whose ranges are then trained too.

    Loss: the distillation's relation loss between the reference's Q/K/V at ``reference_layer`` (0-based) and
    the student's last-layer Q/K/V, plus ``output_weight`` × the same relation KL on the final hidden states
    (the last layer's FFN is otherwise never trained), plus ``embedding_weight`` × (1 − cosine) between
    mean-pooled sentence embeddings (the relation loss is blind to where the embeddings sit; this is what
    a search index sees; needs equal hidden sizes). Dropout is off.
    ``cfg.report_to``'s trackers log under the run folder that holds ``out_dir``, as stage ``out_dir.name``.
    """
    from compress.config import to_plain
    from compress.corpus import MixedSampler
    from compress.distill_step import RelationDistillation
    from compress.distributed import init_from_env
    from compress.numerics import run_numerics
    from compress.relation_loss import relation_kl, resolve_relation_kernel
    from compress.run_dir import RunDir
    from compress.tracking import open_trackers, run_root
    from compress.train_loop import StepOutput, resolve_precision, train

    out_dir = Path(out_dir)
    run_path = run_root(out_dir)
    distill = RunDir(run_path).stage("distill") or {}
    params = {"qat_train": to_plain(cfg), "qat": {"output_weight": output_weight, "embedding_weight": embedding_weight,
              "max_length": max_length, "relation_heads": relation_heads, "reference_layer": reference_layer + 1,
              "reference": type(reference).__name__}, "teacher": (distill.get("config") or {}).get("teacher"),
              "inputs": {"teacher": (distill.get("inputs") or {}).get("teacher")}}
    trackers = open_trackers(cfg.report_to, run_path, out_dir.name, params=params, key="qat_train.report_to")
    ctx = init_from_env(cfg.device)
    # auto: bf16 on CUDA, fp32 on CPU (QAT's accuracy in bf16 on CPU has not been measured)
    cfg = cfg.model_copy(update={"precision": resolve_precision(cfg.precision, ctx.device, cpu_bf16=False)})
    kernel = resolve_relation_kernel(cfg.relation_kernel, ctx.device)
    student.to(ctx.device)
    reference.to(ctx.device).eval().requires_grad_(False)
    last_layer = len(layer_list(student, spec)) - 1
    micro_batch = cfg.batch_size // cfg.grad_accum

    sampler = MixedSampler([len(lines)], [1.0], 1.0, cfg.seed)
    distillation = RelationDistillation(reference, reference_spec, reference_layer, relation_heads, kernel=kernel)

    def compute_loss(step: int, micro: int, _batch) -> StepOutput:
        texts = sampler.lines([lines], micro_batch, step, micro, ctx.rank)
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        ids, mask = enc["input_ids"].to(ctx.device), enc["attention_mask"].to(ctx.device)
        loss, parts, out, ref_out = distillation.loss_with_outputs(student, spec, last_layer, ids, mask)
        if output_weight:
            out_kl = relation_kl(out, ref_out, mask, relation_heads, kernel)
            loss = loss + output_weight * out_kl
            parts["out"] = out_kl
        if embedding_weight:
            gap = 1 - F.cosine_similarity(mean_pool(out, mask), mean_pool(ref_out, mask), dim=-1).mean()
            loss = loss + embedding_weight * gap
            parts["emb"] = gap
        return StepOutput(loss=loss, parts=parts, tokens=int(enc["attention_mask"].sum()))

    with run_numerics(ctx.device, deterministic=cfg.deterministic):
        return train(student, compute_loss, cfg, out_dir, ctx, resume=resume, description="qat", dropout=False,
                     trackers=trackers)
