"""The export variants, each stated once, and the typed records of what an export wrote.

:data:`VARIANTS` is the one table of what ``compress export`` can make: a variant's name, the runtime that runs
it, its precision, the folder and file that hold it under ``export/``, the variant it is made from, when it is
made, the gate it must pass and its path in ``deploy/``. Everything else reads it: the export's build loop
(``export.stage``), the deploy folder (``export.deploy``), the run folder's layout (:mod:`compress.run_dir`),
the benchmark (``bench.stage``) and the model cards. Adding a variant is one row here plus its builder in
``export.builders``.

:class:`ExportReport` is ``parity.json``: per variant an :class:`ExportRecord` (where it is, how close it is
to PyTorch, how it was made). Reports written before the records named their runtime, folder and file are
completed from the table when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

Runtime = Literal["onnxruntime", "openvino"]
ONNX_FILE = "model.onnx"
IR_FILE = "openvino_model.xml"  # its weights: openvino_model.bin beside it


@dataclass(frozen=True)
class VariantSpec:
    """One row of the table.

    ``folder``: the folder under ``export/`` (or ``export/<model>/``) holding its file; a variant that is a compile
    setting of another (``openvino-bf16``) names the other's folder. ``source``: the variant it is made from
    (None: from the PyTorch model, or from the retrained student for the QAT variants). ``made_with``: what asks
    for it besides its runtime (``int8``: ``--int8``; ``qat``: ``--qat``; ``cpu-bf16``: a CPU with native bf16).
    ``gate``: ``fp32``: max abs difference to PyTorch within ``export.fp32_tolerance``; ``cosine``: mean cosine
    of the embeddings to PyTorch at least ``export.min_int8_cosine`` (``--force`` keeps it anyway). ``remedy``:
    what the gate's error tells the user to try. ``deploy``: the file's path in ``deploy/`` (``{isa}``: the CPU's
    instruction set as sentence-transformers names quantized files, ``_avx512_vnni`` or empty); None: no file of its own. ``qat_work``: the folder of a
    QAT variant's retraining checkpoints, beside the variants."""

    name: str
    runtime: Runtime
    precision: Literal["fp32", "bf16", "int8"]
    folder: str
    source: str | None
    made_with: Literal[None, "int8", "qat", "cpu-bf16"]
    gate: Literal["fp32", "cosine"]
    remedy: str
    deploy: str | None
    how: str
    qat_work: str | None = None

    @property
    def file(self) -> str:
        """The model file in :attr:`folder`: ``model.onnx`` or the OpenVINO IR's ``openvino_model.xml``."""
        return ONNX_FILE if self.runtime == "onnxruntime" else IR_FILE

    @property
    def format(self) -> Literal["onnx", "openvino"]:
        return "onnx" if self.runtime == "onnxruntime" else "openvino"

    @property
    def label(self) -> str:
        """How messages name it: ``int8 (ONNX Runtime INT8)``."""
        return f"{self.name} ({'ONNX Runtime' if self.runtime == 'onnxruntime' else 'OpenVINO'} {self.precision.upper()})"

    @property
    def has_folder(self) -> bool:
        """Whether the variant has a folder of its own (openvino-bf16 compiles openvino-fp32's IR)."""
        return self.folder == self.name

    @property
    def compile_precision(self) -> Literal["fp32", "bf16"]:
        """The precision an OpenVINO session is compiled with (INT8 IRs carry their own quantized ops)."""
        return "bf16" if self.precision == "bf16" else "fp32"

    def size_bytes(self, folder: Path) -> int:
        """Bytes of the variant's weights in ``folder``: model.onnx with any external data beside it, or the IR's
        .xml and .bin."""
        return sum(p.stat().st_size for p in Path(folder).iterdir()
                   if p.name.startswith(self.file) or p.name == IR_FILE.replace(".xml", ".bin") and self.runtime == "openvino")

    def deploy_files(self, isa: str) -> list[tuple[str, str]]:
        """[(file in the export folder, path in deploy/)]: the model file and, for OpenVINO, its weights."""
        if self.deploy is None:
            return []
        pairs = [(self.file, self.deploy.format(isa=isa))]
        if self.runtime == "openvino":
            pairs.append((IR_FILE.replace(".xml", ".bin"), pairs[0][1].replace(".xml", ".bin")))
        return pairs


_RETRAIN = "retrain more gently (fewer --qat-steps, a lower qat_train.lr)"
# In build order: a variant comes after the one it is made from.
VARIANTS: tuple[VariantSpec, ...] = (
    VariantSpec("fp32", "onnxruntime", "fp32", "fp32", None, None, "fp32", "try another --opset",
                "onnx/model.onnx", "optimum's ONNX export of the PyTorch model"),
    VariantSpec("int8", "onnxruntime", "int8", "int8", "fp32", "int8", "cosine", "try --qat",
                "onnx/model_qint8{isa}.onnx", "ONNX Runtime INT8 (dynamic, or static with --int8-method static) "
                "of fp32, after ONNX Runtime's CPU fusions"),
    VariantSpec("openvino-fp32", "openvino", "fp32", "openvino-fp32", "fp32", None, "fp32",
                "export with --runtime onnxruntime", "openvino/openvino_model.xml", "fp32 converted to OpenVINO IR"),
    VariantSpec("openvino-bf16", "openvino", "bf16", "openvino-fp32", "openvino-fp32", "cpu-bf16", "cosine",
                "export with --runtime onnxruntime", None, "openvino-fp32's IR compiled to bf16"),
    VariantSpec("openvino-int8", "openvino", "int8", "openvino-int8", "openvino-fp32", "int8", "cosine",
                "try --runtime onnxruntime", "openvino/openvino_model_qint8_quantized.xml",
                "NNCF static INT8 of openvino-fp32, calibrated on the corpus"),
    VariantSpec("int8-qat", "onnxruntime", "int8", "int8-qat", None, "qat", "cosine", _RETRAIN,
                "onnx/model_qint8{isa}_qat.onnx", "the student retrained with the relation loss under ONNX Runtime's "
                "INT8 fake quantization, then exported and quantized as int8", qat_work="qat"),
    VariantSpec("openvino-int8-qat", "openvino", "int8", "openvino-int8-qat", "openvino-fp32", "qat", "cosine",
                _RETRAIN, "openvino/openvino_model_qint8_quantized_qat.xml", "NNCF's quantizers on the student, "
                "retrained with the relation loss, converted to IR with the trained ranges", qat_work="qat-openvino"),
)
BY_NAME: dict[str, VariantSpec] = {v.name: v for v in VARIANTS}
# Folders an export folder may hold: the variants' own and the QAT work folders.
VARIANT_FOLDERS: tuple[str, ...] = tuple(dict.fromkeys(v.folder for v in VARIANTS))
QAT_WORK: dict[str, str] = {v.name: v.qat_work for v in VARIANTS if v.qat_work}


def variant(name: str) -> VariantSpec:
    """The table's row for ``name`` (a KeyError names the known ones)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown export variant '{name}' (known: {', '.join(BY_NAME)})") from None


def _check_table() -> None:
    """The table's own rules: unique names, sources listed earlier and of the same runtime's format chain."""
    seen: set[str] = set()
    for spec in VARIANTS:
        assert spec.name not in seen, spec.name
        assert spec.source is None or spec.source in seen, f"{spec.name} comes before its source {spec.source}"
        assert spec.has_folder or spec.folder in seen, spec.name
        seen.add(spec.name)


_check_table()


class ParityFigures(BaseModel):
    """How a variant compares with the PyTorch model it came from (``export.parity.ParityReport``'s figures)."""

    model_config = ConfigDict(extra="forbid")
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    nn_agreement: float
    samples: int
    prediction_agreement: float | None = None
    mean_abs_diff: float = 0.0
    nn_agreement_clear: float | None = None
    nn_clear_share: float = 1.0


class BeforeQat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean_cosine: float
    min_cosine: float
    nn_agreement: float
    nn_agreement_clear: float | None = None


class ExportRecord(ParityFigures):
    """One variant in ``parity.json``: where it is, its size, its parity figures and how it was made. The
    builder-specific facts are optional; an unknown key is an error (a builder's typo would otherwise pass)."""

    runtime: Runtime
    folder: str
    file: str
    precision: Literal["fp32", "bf16", "int8"]
    size_bytes: int
    tolerance: float | None = None  # the fp32 gate's
    method: str | None = None  # dynamic | static | dynamic+qat | nncf-static | nncf+qat
    reduce_range: bool | None = None
    fused: bool | None = None
    fused_ops: dict[str, int] | None = None
    fused_max_abs_diff: float | None = None
    quantized_embeddings: bool | None = None
    op_counts: dict[str, int] | None = None
    inference_precision: str | None = None
    calibration_lines: int | None = None
    qat_reference: str | None = None
    qat_steps: int | None = None
    qat_final_loss: float | None = None
    ort_vs_fake_quant_max_abs_diff: float | None = None
    ort_vs_fake_quant_relative: float | None = None
    ir_vs_trained_max_abs_diff: float | None = None
    ir_vs_trained_relative: float | None = None
    ir_vs_trained_mean_cosine: float | None = None
    before_qat: BeforeQat | None = None

    def path(self, export_folder: Path) -> Path:
        """The model file of this variant under ``export_folder``."""
        return Path(export_folder) / self.folder / self.file

    def summary(self) -> dict[str, Any]:
        """The figures the manifest keeps per variant."""
        return {k: getattr(self, k) for k in ("max_abs_diff", "mean_cosine", "min_cosine", "nn_agreement", "size_bytes")}


class ExportReport(BaseModel):
    """``parity.json``: the CPU it was checked on, the exported model and its variants in build order."""

    model_config = ConfigDict(extra="forbid")
    cpu: dict[str, Any]
    model: str
    variants: dict[str, ExportRecord]

    @model_validator(mode="before")
    @classmethod
    def _complete_from_table(cls, data: Any) -> Any:
        """Only the table's variants; reports from before the records were typed left runtime, folder, file and
        precision to the name."""
        if isinstance(data, dict) and isinstance(data.get("variants"), dict):
            unknown = [name for name in data["variants"] if name not in BY_NAME]
            if unknown:
                raise ValueError(f"unknown variants {unknown} (known: {', '.join(BY_NAME)})")
            variants = {}
            for name, record in data["variants"].items():
                spec = BY_NAME[name]
                if isinstance(record, dict):
                    record = {"runtime": spec.runtime, "folder": spec.folder, "file": spec.file,
                              "precision": spec.precision, **record}
                variants[name] = record
            data = {**data, "variants": variants}
        return data

    def spec(self, name: str) -> VariantSpec:
        return BY_NAME[name]

    def dump(self) -> dict[str, Any]:
        """The JSON form written to parity.json (unset optional facts left out)."""
        return self.model_dump(mode="json", exclude_none=True)
