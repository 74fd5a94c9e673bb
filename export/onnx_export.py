"""FP32 ONNX export of a Hugging Face encoder folder, with dynamic batch and sequence axes.

optimum's exporter is used: it knows BERT, RoBERTa, XLM-R and their task heads, names the inputs and
outputs the way ``ORTModelFor*`` expects, and copies config and tokenizer beside ``model.onnx``.
Its own validation is off: :mod:`export.parity` checks every variant against PyTorch instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from compress.errors import UserError, first_line
from compress.run_dir import atomic_directory

TASKS = {"student": "feature-extraction", "classifier": "text-classification"}


def export_fp32(model_dir: Path, out_dir: Path, *, task: str, opset: int) -> Path:
    """Write ``out_dir/model.onnx`` plus config and tokenizer files; nothing is left behind on failure."""
    from optimum.exporters.onnx import main_export

    logging.getLogger("optimum").setLevel(logging.ERROR)
    with atomic_directory(out_dir) as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's warnings are about HF code, not the user's input
                main_export(str(model_dir), output=tmp, task=task, opset=opset, do_validation=False, device="cpu")
        except Exception as err:  # the exporters raise many types; the user needs the first line
            raise UserError(f"ONNX export of {model_dir} at opset {opset} failed ({first_line(err)}): try another --opset") from None
    return out_dir
