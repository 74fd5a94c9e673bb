"""FP32 ONNX export of a Hugging Face encoder folder, with dynamic batch and sequence axes.

``torch.onnx.export`` with the TorchScript tracer (``dynamo=False``), the path optimum's exporter takes
for these encoders, written out here because optimum-onnx caps transformers below 5 and this needs nothing
of it: every family in :mod:`compress.architectures` exports the same way. Inputs and outputs carry the
names ``ORTModelFor*`` expects (``input_ids``, ``attention_mask``, ``token_type_ids`` where the model has
token types; ``last_hidden_state`` or ``logits``), and config and tokenizer files go beside ``model.onnx``,
so optimum's ORTModel, where it is installed, loads the folder. There is no validation here:
:mod:`export.parity` checks every variant against PyTorch instead.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path

from compress.errors import UserError, first_line
from compress.run_dir import atomic_directory

TASKS = {"student": "feature-extraction", "classifier": "text-classification"}
_OUTPUTS = {"feature-extraction": "last_hidden_state", "text-classification": "logits"}
_AXES = {0: "batch_size", 1: "sequence_length"}


def input_names(model) -> list[str]:
    """The text inputs the graph takes: ids and mask, and token types where the model has more than one
    (BERT, ELECTRA; not RoBERTa / XLM-R, whose single token type is implied), as optimum names them."""
    names = ["input_ids", "attention_mask"]
    accepts = inspect.signature(model.forward).parameters
    if "token_type_ids" in accepts and getattr(model.config, "type_vocab_size", 0) > 1:
        names.append("token_type_ids")
    return names


def builds_mask_from_lengths(model) -> bool:
    """Whether ``model``'s family builds its attention mask with transformers 5's ``masking_utils`` (BERT, RoBERTa,
    XLM-R, ELECTRA, DistilBERT on transformers 5; not MPNet, nor anything on transformers 4). Such a model must be
    given a prepared [B, 1, T, T] mask to be traced, which it takes as it is: 5.0–5.5 build the mask from the
    sequence length, which the tracer makes a tensor, then index it as a legacy cache_position
    (masking_utils.sdpa_mask: "tuple index out of range")."""
    return hasattr(sys.modules[type(model).__module__], "create_bidirectional_mask")


def additive_mask(mask):
    """[B, T] 0/1 attention mask → [B, 1, T, T] float mask added to the attention scores: 0 where a key is a token,
    the dtype's minimum where it is padding. Built as transformers 4's SDPA path builds it (expand, invert, fill),
    a pattern ONNX Runtime's attention fusion matches beside transformers 5's scores × scaling (its matcher takes
    the first Mul above the Add, so a (1 − mask) × min there would hide the mask from it)."""
    import torch

    batch, length = mask.shape
    inverted = 1.0 - mask[:, None, None, :].expand(batch, 1, length, length).to(torch.float32)
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(torch.float32).min)


def traceable(model, names: list[str], output: str):
    """``model`` as a module of positional text inputs (in ``names``' order) returning its one ``output``
    ([B, T, H] hidden states or [B, labels] logits), with the mask prepared where tracing needs it: what the ONNX
    exporter and OpenVINO's converter trace."""
    import torch

    prepare_mask = builds_mask_from_lengths(model)

    class Traceable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            kwargs = dict(zip(names, inputs))
            if prepare_mask:
                kwargs["attention_mask"] = additive_mask(kwargs["attention_mask"])
            return getattr(self.model(**kwargs), output)

    return Traceable()


def export_fp32(model_dir: Path, out_dir: Path, *, task: str, opset: int) -> Path:
    """Write ``out_dir/model.onnx`` plus config and tokenizer files; nothing is left behind on failure."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if task not in _OUTPUTS:
        raise ValueError(f"unknown export task {task!r}: one of {', '.join(_OUTPUTS)}")
    loader = AutoModel if task == TASKS["student"] else AutoModelForSequenceClassification
    # Eager attention traces to the MatMul/Softmax pattern ONNX Runtime's attention fusion knows.
    model = loader.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    names = input_names(model)
    output = _OUTPUTS[task]

    # A padded row, so the traced graph keeps the attention mask's arithmetic (an all-ones mask may be skipped).
    ids = torch.full((2, 16), tokenizer.pad_token_id or 0, dtype=torch.long)
    ids[:, :16] = torch.randint(5, min(model.config.vocab_size, 1000), (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    with atomic_directory(out_dir) as tmp:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the tracer's warnings are about HF code, not the user's input
                torch.onnx.export(traceable(model, names, output), tuple(example[n] for n in names), str(tmp / "model.onnx"), dynamo=False,
                                  input_names=names, output_names=[output], opset_version=opset,
                                  dynamic_axes={n: _AXES for n in [*names, output]}, do_constant_folding=True)
        except Exception as err:  # the exporter raises many types; the user needs the first line
            raise UserError(f"ONNX export of {model_dir} at opset {opset} failed ({first_line(err)}): try another --opset") from None
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir
