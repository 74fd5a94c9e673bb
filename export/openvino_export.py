"""OpenVINO variants of an FP32 ONNX export: IR, bf16 as a compile setting, and NNCF's post-training INT8.

* ``openvino-fp32``: the FP32 ONNX graph converted to OpenVINO IR (``openvino_model.xml`` + ``.bin``, weights
  kept in FP32), compiled with ``INFERENCE_PRECISION_HINT=f32`` — OpenVINO compiles to bf16 by default on CPUs
  that have it, so an honest FP32 variant has to ask.
* ``openvino-bf16``: the same IR compiled with ``INFERENCE_PRECISION_HINT=bf16`` (no file of its own; made
  where the CPU has bf16).
* ``openvino-int8``: ``nncf.quantize`` on the IR with the transformer preset (``ModelType.TRANSFORMER``: the
  matmuls in INT8, softmax, layer norms and GELU kept in float), calibrated on real text as static ORT INT8
  is. OpenVINO cannot read ORT's fused INT8 graph (``QAttention`` is an ORT contrib op), hence INT8 from FP32.

openvino and nncf are an optional extra (``pip install -e ".[openvino]"``); a missing one is a one-line
error naming it. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

import numpy as np

from compress.errors import UserError, first_line
from compress.variants import IR_FILE

log = logging.getLogger(__name__)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def require_openvino(with_nncf: bool = False):
    """The ``openvino`` module (and check ``nncf``), or a one-line UserError naming the extra to install."""
    import importlib

    try:
        for name in ("openvino", "nncf")[: 2 if with_nncf else 1]:
            importlib.import_module(name)
    except ImportError:
        raise UserError(f"--runtime openvino needs the openvino extra ({name} is not installed): "
                        "pip install -e \".[openvino]\" (openvino and nncf; neither pulls a CUDA torch)") from None
    return importlib.import_module("openvino")


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can compute in bf16 here (AVX-512 BF16 or AMX)."""
    ov = require_openvino()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ir_size(folder: Path) -> int:
    """Bytes of a folder's IR (``openvino_model.xml`` + ``.bin``)."""
    return sum((Path(folder) / IR_FILE).with_suffix(suffix).stat().st_size for suffix in (".xml", ".bin"))


def copy_side_files(src_dir: Path, dst_dir: Path) -> None:
    """config.json and the tokenizer files, so the folder loads as a model (the ONNX graph itself stays behind)."""
    for path in src_dir.iterdir():
        if path.is_file() and path.suffix not in (".onnx", ".xml", ".bin") and path.name != "provenance.json":
            shutil.copy2(path, dst_dir / path.name)


def convert_to_ir(onnx_dir: Path, out_dir: Path) -> Path:
    """``out_dir/openvino_model.xml`` (+ ``.bin``, FP32 weights) from ``onnx_dir/model.onnx``, with its side files."""
    ov = require_openvino()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        model = ov.convert_model(str(onnx_dir / "model.onnx"))
    except Exception as err:  # the converter's error types vary by frontend
        raise UserError(f"OpenVINO cannot convert {onnx_dir / 'model.onnx'} ({first_line(err)}): report the model "
                        "family, or export with --runtime onnxruntime") from None
    ov.save_model(model, str(out_dir / IR_FILE), compress_to_fp16=False)
    copy_side_files(onnx_dir, out_dir)
    return out_dir


def quantize_int8(fp32_dir: Path, out_dir: Path, calibration: list[dict[str, np.ndarray]]) -> Path:
    """``out_dir`` = NNCF's static INT8 (transformer preset) of ``fp32_dir``'s IR, calibrated on ``calibration``
    (batches as :func:`export.parity.encode` makes them; every row of every batch is used)."""
    ov = require_openvino(with_nncf=True)
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)  # progress bars and statistics are for NNCF's developers
    model = ov.Core().read_model(str(fp32_dir / IR_FILE))
    names = [i.get_any_name() for i in model.inputs]
    rows = sum(len(b["input_ids"]) for b in calibration)
    log.info("openvino-int8: NNCF calibration on %d lines (about a minute for a 6x384 student on 2 cores)", rows)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars: its stages, not ours
            quantized = nncf.quantize(model, nncf.Dataset(calibration, lambda batch: feed(names, batch)),
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=max(rows, 1))
    except Exception as err:
        raise UserError(f"NNCF could not quantize {fp32_dir} ({first_line(err)}): export with --runtime onnxruntime, "
                        "or report the model family") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_dir / IR_FILE), compress_to_fp16=False)
    copy_side_files(fp32_dir, out_dir)
    return out_dir


def input_names(folder: Path) -> list[str]:
    """The names of the inputs of ``folder``'s IR, in order."""
    ov = require_openvino()
    return [port.get_any_name() for port in ov.Core().read_model(str(Path(folder) / IR_FILE)).inputs]


def feed(names: list[str], batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs the model declares, token types as zeros where the tokenizer gives none (multilingual-e5: BERT
    weights, XLM-R tokenizer). Every declared input must be given: OpenVINO would reuse a stale tensor."""
    out = {k: batch[k] for k in names if k in batch}
    if "token_type_ids" in names and "token_type_ids" not in out:
        out["token_type_ids"] = np.zeros_like(batch["input_ids"])
    missing = [n for n in names if n not in out]
    if missing:
        raise UserError(f"the model takes input(s) {', '.join(missing)}, which a text batch does not have")
    return out


class _Input:
    def __init__(self, name: str):
        self.name = name


class OpenVINOSession:
    """A compiled OpenVINO model with the slice of ``onnxruntime.InferenceSession``'s interface that parity and
    scoring use: ``get_inputs()`` and ``run(output_names, feeds)``.

    ``precision``: fp32 or bf16 (``INFERENCE_PRECISION_HINT``); ``threads``: ``INFERENCE_NUM_THREADS`` (None:
    OpenVINO's default). :attr:`inference_precision` is what the plugin actually compiled to.
    """

    def __init__(self, folder: Path, precision: str = "fp32", threads: int | None = None):
        ov = require_openvino()
        path = Path(folder) / IR_FILE
        if not path.is_file():
            raise UserError(f"no OpenVINO model at {path}: run `compress export --runtime openvino` first")
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as err:
            raise UserError(f"OpenVINO cannot load {path} ({first_line(err)}): re-run `compress export`") from None
        self.request = self.compiled.create_infer_request()
        self.names = [i.get_any_name() for i in self.compiled.inputs]
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino.Type: f32 or bf16
        self.inference_precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def get_inputs(self) -> list[_Input]:
        return [_Input(n) for n in self.names]

    def get_outputs(self) -> list[_Input]:
        return [_Input(o.get_any_name()) for o in self.compiled.outputs]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(feed(self.names, feeds))
        outputs = output_names or [o.get_any_name() for o in self.compiled.outputs]
        return [np.array(result[self.compiled.output(name)]) for name in outputs]
