"""Quantization-aware retraining for OpenVINO's INT8: NNCF's quantizers on the PyTorch student, trained with the
relation loss, and the trained model converted to IR as it is.

NNCF's PyTorch backend quantizes the student itself (``nncf.quantize``, the transformer preset, calibrated on
the same lines as the IR's post-training INT8): the model keeps its Hugging Face class and modules, and hooks
hold FakeQuantize ops whose ranges are trainable parameters. :func:`export.qat.retrain` then trains weights and
ranges together against the FP32 reference, and :func:`save_ir` converts the result (``ov.convert_model``) into
an IR whose FakeQuantize ops OpenVINO compiles to INT8: the model that was trained, with no second calibration.
This is NNCF's own QAT recipe (quantize, fine-tune, convert); ``export.qat.prepare`` imitates ORT's dynamic
scheme instead, which has no ranges to learn.

The student must use SDPA attention (transformers' default) so that OpenVINO fuses its attention as it does
for the ONNX graph (ScaledDotProductAttention); the converted IR has the FP32 IR's inputs and one output,
``last_hidden_state``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from compress.errors import UserError, first_line
from export.onnx_export import traceable
from export.openvino_export import IR_FILE, copy_side_files, feed, require_openvino

log = logging.getLogger(__name__)
# NNCF compiles its PyTorch quantization kernels on first use (again for each new environment; cached under
# ~/.cache/torch_extensions) and gives up after 60 s, which a loaded 2-core machine exceeds: allow 10 minutes
# unless the user has set NNCF's own variable. Without a compiler NNCF falls back to plain torch operations.
EXTENSION_TIMEOUT_S = "600"


def _torch_feed(names: list[str], batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in feed(names, batch).items()}


def load_for_training(model_dir: Path) -> torch.nn.Module:
    """The encoder in ``model_dir`` with SDPA attention, so that OpenVINO fuses its attention as it does for the
    ONNX graph; a family without SDPA in this transformers loads with its default (correct, attention unfused)."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(model_dir, attn_implementation="sdpa")
    except (ValueError, ImportError) as err:
        log.warning("openvino-int8-qat: no SDPA attention for %s here (%s); its IR keeps the attention unfused",
                    model_dir, first_line(err))
        return AutoModel.from_pretrained(model_dir)


def quantize_for_training(model: torch.nn.Module, names: list[str],
                          calibration: list[dict[str, np.ndarray]]) -> torch.nn.Module:
    """``model`` (in eval mode, SDPA attention) with NNCF's INT8 quantizers, ranges calibrated on ``calibration``
    (batches as :func:`export.parity.encode` makes them) and fed as ``names`` (the IR's inputs); the returned
    module is ``model`` itself, ready to train."""
    require_openvino(with_nncf=True)
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", EXTENSION_TIMEOUT_S)
    rows = sum(len(b["input_ids"]) for b in calibration)
    log.info("openvino-int8-qat: NNCF quantizers on the PyTorch student, calibrated on %d lines (the first run "
             "compiles NNCF's CPU kernels: a minute or two, once)", rows)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
            return nncf.quantize(model.eval(), nncf.Dataset(calibration, lambda batch: _torch_feed(names, batch)),
                                 model_type=nncf.ModelType.TRANSFORMER, subset_size=max(rows, 1))
    except Exception as err:
        if "extension load function failed" in str(err):  # NNCF's compile timed out, or a stale lock file blocks it
            raise UserError(f"NNCF could not build its CPU kernels in time ({first_line(err)}): remove "
                            "~/.cache/torch_extensions/*/nncf (a build killed halfway leaves a lock), or raise "
                            "NNCF_EXTENSION_LOAD_TIMEOUT (seconds), then run the export again") from None
        raise UserError(f"NNCF could not quantize the PyTorch student ({first_line(err)}): export without --qat for "
                        "OpenVINO (openvino-int8 is made from the IR), or report the model family") from None


def save_ir(model: torch.nn.Module, names: list[str], example: dict[str, np.ndarray], out_dir: Path,
            side_files_from: Path) -> Path:
    """``out_dir/openvino_model.xml`` (+ ``.bin``) converted from the NNCF-quantized ``model``, traced on
    ``example`` (one batch), with inputs named ``names`` and the single output ``last_hidden_state``; the
    config and tokenizer files are copied from ``side_files_from``."""
    ov = require_openvino()
    model.eval()
    inputs = _torch_feed(names, example)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on NNCF's constant quantizer levels: they are constants in the deployed graph too
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            converted = ov.convert_model(traceable(model, names, "last_hidden_state"),
                                         example_input=tuple(inputs[n] for n in names))
    except Exception as err:
        raise UserError(f"OpenVINO cannot convert the retrained student ({first_line(err)}): export without --qat "
                        "for OpenVINO, or report the model family") from None
    for port, name in zip(converted.inputs, names):  # the tracer adds internal names beside the argument's
        port.get_tensor().set_names({name})
    hidden = converted.outputs[0]
    hidden.get_tensor().set_names({"last_hidden_state"})
    single = ov.Model([hidden], converted.get_parameters(), "student")
    out_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(single, str(out_dir / IR_FILE), compress_to_fp16=False)
    copy_side_files(side_files_from, out_dir)
    return out_dir
