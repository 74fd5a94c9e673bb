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

    class Graph(torch.nn.Module):
        """The model as a function of positional text inputs, returning the one output the task needs."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return getattr(self.model(**dict(zip(names, inputs))), output)

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
                torch.onnx.export(Graph(), tuple(example[n] for n in names), str(tmp / "model.onnx"), dynamo=False,
                                  input_names=names, output_names=[output], opset_version=opset,
                                  dynamic_axes={n: _AXES for n in [*names, output]}, do_constant_folding=True)
        except Exception as err:  # the exporter raises many types; the user needs the first line
            raise UserError(f"ONNX export of {model_dir} at opset {opset} failed ({first_line(err)}): try another --opset") from None
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir
