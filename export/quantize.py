"""INT8 post-training quantization with ONNX Runtime: dynamic, or static QDQ calibrated on real text."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static,
)

from compress.errors import UserError

# MatMul carries nearly all the compute of an encoder (Attention is its fused form in an ORT-optimised
# graph); Gather quantizes the embedding tables.
_OPS = ["MatMul", "Attention"]
# Fused graphs hold com.microsoft ops whose outputs shape inference cannot type: they are float.
_EXTRA = {"DefaultTensorType": onnx.TensorProto.FLOAT}


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs advice ("consider pre-processing") on the root logger; not for our users."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def op_counts(model_path: Path) -> Counter:
    """How many nodes of each op type the graph has (e.g. MatMulInteger, QuantizeLinear)."""
    return Counter(node.op_type for node in onnx.load(str(model_path), load_external_data=False).graph.node)


def quantize_dynamic_int8(src: Path, dst: Path, *, reduce_range: bool, quantize_embeddings: bool) -> None:
    """Per-channel signed INT8 weights; activations quantized at run time (MatMulInteger / DynamicQuantizeLinear)."""
    with _quiet_root_logger():
        quantize_dynamic(src, dst, op_types_to_quantize=_OPS + (["Gather"] if quantize_embeddings else []),
                         per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8, extra_options=_EXTRA)


class _TextCalibration(CalibrationDataReader):
    """ONNX Runtime calibration reader over pre-tokenised batches of real text."""

    def __init__(self, batches: Iterable[dict[str, np.ndarray]]):
        self._batches = iter(list(batches))

    def get_next(self):
        return next(self._batches, None)


def quantize_static_int8(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], *,
                         reduce_range: bool, quantize_embeddings: bool) -> None:
    """QDQ graph: per-channel signed INT8 weights, unsigned INT8 activations with min-max ranges from real text.

    Min-max calibration is the default on purpose: percentile calibration has collapsed BERT models in
    public reports.
    """
    if not calibration:
        raise UserError("static INT8 needs calibration text and none was usable: pass --calib-corpus with real text")
    with _quiet_root_logger():
        quantize_static(src, dst, _TextCalibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=_OPS + (["Gather"] if quantize_embeddings else []),
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, **_EXTRA})
