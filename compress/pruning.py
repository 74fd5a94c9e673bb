"""``student.init=teacher``: a student of any smaller shape of the teacher's family, cut out of the teacher.

Depth: one teacher layer per student layer (``student.init_from_teacher_layers``; by default evenly spaced,
the last one included). Width: structured pruning of whole units, ranked on a calibration sample of the
distillation corpus (``student.prune_criterion``):

* ``activation`` (the default, as NVIDIA's Minitron ranks them): hidden channels by the mean |output| of every
  LayerNorm on the residual stream (the embeddings' and each kept layer's), summed; attention heads, per layer,
  by the mean L2 norm of the head's context vector (the input of the attention's output projection); FFN
  neurons, per layer, by their mean |activation| (the input of the FFN's second Linear). Means over real tokens.
* ``magnitude``: the same units ranked by the norms of the weights that read and write them (no data).

Whole heads of the teacher's head size are kept, so the student's hidden / heads must equal it (a different head
size would change every attention score; it is refused, not approximated). MPNet's relative position bias is
one [buckets, heads] table shared by all layers, so an MPNet student keeps the same heads in every layer (ranked
by their importance summed over the kept layers). At step 0 a pruned student computes exactly what the teacher
computes with the pruned units masked and its LayerNorms taken over the kept channels (tests/test_pruning.py
checks it against such a masked teacher).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Literal

import torch
from transformers import PreTrainedModel

from compress.architectures import ArchSpec, layer_list
from compress.errors import UserError

log = logging.getLogger(__name__)
Criterion = Literal["activation", "magnitude"]


@dataclass
class Importance:
    """Scores of the prunable units (higher: more important): ``hidden`` [H]; per kept teacher layer (in the order
    of :attr:`PrunePlan.teacher_layers`) ``heads`` [L, N] and ``neurons`` [L, F]."""

    hidden: torch.Tensor
    heads: torch.Tensor
    neurons: torch.Tensor


@dataclass
class PrunePlan:
    """What the student keeps of the teacher: ``teacher_layers`` (1-based, one per student layer), ``hidden``
    channels, per student layer the teacher's ``heads`` and FFN ``neurons`` (all sorted ascending), and how they
    were ranked (``criterion``, ``calibration``: sequences and tokens measured, or None)."""

    teacher_layers: list[int]
    hidden: list[int]
    heads: list[list[int]]
    neurons: list[list[int]]
    criterion: str
    calibration: dict[str, int] | None

    def record(self) -> dict:
        """The plan as provenance.json stores it."""
        return {"kind": "teacher", **asdict(self)}

    def summary(self) -> str:
        return (f"teacher layers {self.teacher_layers}, {len(self.hidden)} hidden channels, {len(self.heads[0])} heads "
                f"and {len(self.neurons[0])} FFN neurons per layer, ranked by {self.criterion}")


def evenly_spaced_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """One teacher layer per student layer (1-based), evenly spaced and ending at the last: 12 → 6: 2, 4, … 12."""
    return [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]


def _sizes(config, spec: ArchSpec) -> tuple[int, int, int, int]:
    c = config.to_dict()
    return c[spec.num_layers_key], c[spec.hidden_key], c[spec.heads_key], c[spec.ffn_key]


def check_prunable(teacher_config, student_config, spec: ArchSpec, teacher_layers: list[int]) -> None:
    """One-line errors for a student shape that cannot be cut out of this teacher."""
    t_layers, t_hidden, t_heads, t_ffn = _sizes(teacher_config, spec)
    s_layers, s_hidden, s_heads, s_ffn = _sizes(student_config, spec)
    head_size = t_hidden // t_heads
    if len(teacher_layers) != s_layers:
        raise UserError(f"student.init_from_teacher_layers lists {len(teacher_layers)} layers but the student has "
                        f"{s_layers}: give one teacher layer per student layer")
    for index in teacher_layers:
        if not 1 <= index <= t_layers:
            raise UserError(f"teacher layer {index} is out of range 1..{t_layers} in student.init_from_teacher_layers")
    for what, student, teacher in (("hidden size", s_hidden, t_hidden), ("attention heads", s_heads, t_heads),
                                   ("FFN size", s_ffn, t_ffn)):
        if student > teacher:
            raise UserError(f"student.init=teacher cuts the student out of the teacher, whose {what} is {teacher}: "
                            f"the student's {student} is larger (use student.init=random for a larger student)")
    if s_hidden != s_heads * head_size:
        raise UserError(f"student.init=teacher keeps whole attention heads of the teacher's {head_size} dimensions: "
                        f"choose heads = hidden / {head_size} (--heads {max(1, s_hidden // head_size)} for --hidden "
                        f"{s_hidden}), or student.init=random")


def _layer_modules(model: PreTrainedModel, spec: ArchSpec, layer: int) -> dict[str, torch.nn.Module]:
    block = layer_list(model, spec)[layer]
    return {"attention_output": block.get_submodule(spec.attention_output), "ffn_out": block.get_submodule(spec.ffn_out),
            **{f"norm{i}": block.get_submodule(path) for i, path in enumerate(spec.layer_norms)}}


def _embedding_norm(model: PreTrainedModel, hidden: int) -> torch.nn.Module | None:
    """The embeddings' LayerNorm when it normalises the residual stream (not ELECTRA's narrower embeddings)."""
    try:
        norm = model.get_submodule("embeddings.LayerNorm")
    except AttributeError:
        return None
    return norm if tuple(norm.normalized_shape) == (hidden,) else None


def activation_importance(teacher: PreTrainedModel, spec: ArchSpec, layers: list[int],
                          batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Importance, dict[str, int]]:
    """Minitron's activation importance over ``batches`` of (input ids [B, T], attention mask [B, T]), through forward
    hooks on the teacher; ``layers`` are 0-based. Returns the scores and the sequences and tokens measured. Memory:
    one batch of activations at a time, whatever the corpus size."""
    _, hidden, heads, ffn = _sizes(teacher.config, spec)
    head_size = hidden // heads
    sums = Importance(torch.zeros(hidden, dtype=torch.float64), torch.zeros(len(layers), heads, dtype=torch.float64),
                      torch.zeros(len(layers), ffn, dtype=torch.float64))
    state: dict[str, torch.Tensor] = {}

    def real(x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] → [real tokens, D] in float64."""
        return x[state["mask"]].double()

    def on_norm(_module, _inputs, output):
        sums.hidden.add_(real(output).abs().sum(0))

    def on_heads(row: int):
        def hook(_module, inputs):
            x = real(inputs[0])
            sums.heads[row].add_(x.view(len(x), heads, head_size).norm(dim=-1).sum(0))
        return hook

    def on_neurons(row: int):
        def hook(_module, inputs):
            sums.neurons[row].add_(real(inputs[0]).abs().sum(0))
        return hook

    handles = []
    norm = _embedding_norm(teacher, hidden)
    if norm is not None:
        handles.append(norm.register_forward_hook(on_norm))
    for row, layer in enumerate(layers):
        modules = _layer_modules(teacher, spec, layer)
        handles += [modules["attention_output"].register_forward_pre_hook(on_heads(row)),
                    modules["ffn_out"].register_forward_pre_hook(on_neurons(row))]
        handles += [m.register_forward_hook(on_norm) for k, m in modules.items() if k.startswith("norm")]
    sequences = tokens = 0
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.inference_mode():
            for ids, mask in batches:
                state["mask"] = mask.bool()
                teacher(input_ids=ids, attention_mask=mask)
                sequences += len(ids)
                tokens += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
        teacher.train(was_training)
    if not tokens:
        raise UserError("the calibration sample for student.init=teacher has no tokens: check the corpora")
    scale = 1.0 / tokens
    return Importance(sums.hidden * scale, sums.heads * scale, sums.neurons * scale), {"sequences": sequences, "tokens": tokens}


def magnitude_importance(teacher: PreTrainedModel, spec: ArchSpec, layers: list[int]) -> Importance:
    """Weight-norm importance: a hidden channel by the norms of every kept layer's weights that read it (Q, K, V,
    the FFN's first Linear: columns) and write it (the two output projections: rows); a head by the norm of its
    Q, K, V rows and output-projection columns; a neuron by its FFN rows and columns."""
    _, hidden, heads, ffn = _sizes(teacher.config, spec)
    head_size = hidden // heads
    channel = torch.zeros(hidden, dtype=torch.float64)
    head_scores = torch.zeros(len(layers), heads, dtype=torch.float64)
    neuron_scores = torch.zeros(len(layers), ffn, dtype=torch.float64)
    with torch.no_grad():
        for row, layer in enumerate(layers):
            block = layer_list(teacher, spec)[layer]
            qkv = [block.get_submodule(p).weight.double() for p in (spec.query, spec.key, spec.value)]
            out = block.get_submodule(spec.attention_output).weight.double()
            ffn_in = block.get_submodule(spec.ffn_in).weight.double()
            ffn_out = block.get_submodule(spec.ffn_out).weight.double()
            for w in (*qkv, ffn_in):
                channel += w.pow(2).sum(0)
            for w in (out, ffn_out):
                channel += w.pow(2).sum(1)
            per_head = sum(w.pow(2).sum(1).view(heads, head_size).sum(1) for w in qkv) + out.pow(2).sum(0).view(heads, head_size).sum(1)
            head_scores[row] = per_head.sqrt()
            neuron_scores[row] = (ffn_in.pow(2).sum(1) + ffn_out.pow(2).sum(0)).sqrt()
    return Importance(channel.sqrt(), head_scores, neuron_scores)


def _top(scores: torch.Tensor, k: int) -> list[int]:
    """The ``k`` highest-scoring indices, ascending (ties to the lower index)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:k])


def plan_pruning(importance: Importance, student_config, spec: ArchSpec, teacher_layers: list[int], criterion: str,
                 calibration: dict[str, int] | None) -> PrunePlan:
    """Keep the student's share of each unit: the top hidden channels, and per layer the top heads and neurons
    (one head set for every layer when the family shares a per-head table across layers)."""
    _, s_hidden, s_heads, s_ffn = _sizes(student_config, spec)
    if spec.shared_head_bias:
        heads = [_top(importance.heads.sum(0), s_heads)] * len(teacher_layers)
    else:
        heads = [_top(row, s_heads) for row in importance.heads]
    return PrunePlan(list(teacher_layers), _top(importance.hidden, s_hidden), heads,
                     [_top(row, s_ffn) for row in importance.neurons], criterion, calibration)


def _cut(tensor: torch.Tensor, *index: list[int] | None) -> torch.Tensor:
    """``tensor`` with axis i restricted to ``index[i]`` (None: all of it)."""
    for axis, keep in enumerate(index):
        if keep is not None:
            tensor = tensor.index_select(axis, torch.tensor(keep, dtype=torch.long, device=tensor.device))
    return tensor


def pruned_state(teacher: PreTrainedModel, student: PreTrainedModel, spec: ArchSpec, plan: PrunePlan) -> dict[str, torch.Tensor]:
    """The student's whole state dict cut out of the teacher's by ``plan``; an error names any tensor whose role in
    the cut is unknown (a family this module does not describe)."""
    _, t_hidden, t_heads, _ = _sizes(teacher.config, spec)
    _, s_hidden, _, _ = _sizes(student.config, spec)
    head_size = t_hidden // t_heads
    source = teacher.state_dict()
    prefix = spec.layers + "."
    hidden = plan.hidden
    out: dict[str, torch.Tensor] = {}
    for name, target in student.state_dict().items():
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            layer = int(index)
            tensor = source[f"{prefix}{plan.teacher_layers[layer] - 1}.{rest}"]
            module, kind = rest.rsplit(".", 1)
            dims = [h * head_size + d for h in plan.heads[layer] for d in range(head_size)]
            neurons = plan.neurons[layer]
            roles = {spec.query: (dims, hidden), spec.key: (dims, hidden), spec.value: (dims, hidden),
                     spec.attention_output: (hidden, dims), spec.ffn_in: (neurons, hidden),
                     spec.ffn_out: (hidden, neurons), **{norm: (hidden,) for norm in spec.layer_norms}}
            if module in roles:
                cut = _cut(tensor, *roles[module][: tensor.dim()])
            elif tensor.shape == target.shape:
                cut = tensor
            else:
                raise UserError(f"cannot prune {name} ({tuple(tensor.shape)} → {tuple(target.shape)}): its role is not "
                                "described in compress/architectures.py")
        elif spec.shared_head_bias and name == spec.shared_head_bias + ".weight":
            cut = _cut(source[name], None, plan.heads[0])
        else:  # embeddings, their projection, the pooler: every axis of the teacher's width is a hidden channel
            tensor = source[name]
            axes = [hidden if t == t_hidden and s == s_hidden and t != s else None
                    for t, s in zip(tensor.shape, target.shape)]
            cut = _cut(tensor, *axes)
            if cut.shape != target.shape:
                raise UserError(f"cannot prune {name} ({tuple(tensor.shape)} → {tuple(target.shape)}): its role is not "
                                "described in compress/architectures.py")
        out[name] = cut.to(target.dtype).clone()
    return out


def prune_into(student: PreTrainedModel, teacher: PreTrainedModel, spec: ArchSpec, plan: PrunePlan) -> None:
    """Load the student with its cut of the teacher (every tensor of the student is set)."""
    student.load_state_dict(pruned_state(teacher, student, spec, plan), strict=True)


def init_from_teacher(student: PreTrainedModel, teacher: PreTrainedModel, spec: ArchSpec, *,
                      teacher_layers: list[int] | None, criterion: Criterion,
                      batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None) -> PrunePlan:
    """``student.init=teacher``: rank the teacher's units (``batches`` of calibration ids and masks for the
    ``activation`` criterion), keep the student's share and load it. Returns the plan (for the provenance)."""
    t_layers = _sizes(teacher.config, spec)[0]
    chosen = teacher_layers or evenly_spaced_layers(t_layers, _sizes(student.config, spec)[0])
    check_prunable(teacher.config, student.config, spec, chosen)
    started = time.perf_counter()
    zero_based = [i - 1 for i in chosen]
    calibration = None
    if _sizes(student.config, spec)[1:] == _sizes(teacher.config, spec)[1:]:  # as wide as the teacher: nothing to rank
        _, hidden, heads, ffn = _sizes(teacher.config, spec)
        plan = PrunePlan(list(chosen), list(range(hidden)), [list(range(heads))] * len(chosen),
                         [list(range(ffn))] * len(chosen), "none (as wide as the teacher)", None)
        prune_into(student, teacher, spec, plan)
        log.info("student initialised from teacher layers %s (as wide as the teacher: copied)", chosen)
        return plan
    if criterion == "activation":
        if batches is None:
            raise ValueError("the activation criterion needs calibration batches")
        importance, calibration = activation_importance(teacher, spec, zero_based, batches)
    else:
        importance = magnitude_importance(teacher, spec, zero_based)
    plan = plan_pruning(importance, student.config, spec, chosen, criterion, calibration)
    prune_into(student, teacher, spec, plan)
    log.info("student cut out of the teacher: %s%s, in %.1f s", plan.summary(),
             f" on {calibration['sequences']} sequences ({calibration['tokens']:,} tokens)" if calibration else "",
             time.perf_counter() - started)
    return plan
