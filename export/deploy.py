"""``RUN/deploy/``: the run's student as one folder that sentence-transformers, transformers and optimum load as is.

Layout (sentence-transformers' own file names, so its backends find every variant)::

    deploy/config.json, model.safetensors, tokenizer files     the student (AutoModel, SentenceTransformer)
    deploy/modules.json, sentence_bert_config.json, 1_Pooling/ its sentence-transformers modules
    deploy/onnx/model.onnx                                      fp32             (backend="onnx")
    deploy/onnx/model_qint8_<isa>.onnx                          int8             (file_name=...; isa: avx512_vnni, ...)
    deploy/onnx/model_qint8_<isa>_qat.onnx                      int8-qat
    deploy/openvino/openvino_model.xml (+ .bin)                 openvino-fp32    (backend="openvino")
    deploy/openvino/openvino_model_qint8_quantized.xml          openvino-int8
    deploy/openvino/openvino_model_qint8_quantized_qat.xml      openvino-int8-qat
    deploy/provenance.json                                      the student's, plus which file is which variant

Files are hard links to the export's where the filesystem allows (no second copy of a large model). Built
beside the old folder and swapped in, after every successful export of the student.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from compress.model_card import write_model_card
from compress.run_dir import RunDir, atomic_directory, read_provenance, write_provenance
from compress.variants import ExportReport, variant


def isa_suffix(features: dict[str, Any]) -> str:
    """The instruction set as sentence-transformers spells it in a dynamically quantized ONNX file's name on this
    CPU (``model_qint8_avx512_vnni.onnx``: ``_avx512_vnni``; ``model_qint8.onnx``: empty)."""
    for flag, isa in (("avx512_vnni", "avx512_vnni"), ("avx512f", "avx512"), ("avx2", "avx2")):
        if features.get(flag):
            return f"_{isa}"
    return "_arm64" if os.uname().machine in ("arm64", "aarch64") else ""


def quantized_onnx_name(features: dict[str, Any]) -> str:
    """The int8 variant's file name in ``deploy/onnx/`` on a CPU with ``features``."""
    return Path(variant("int8").deploy_files(isa_suffix(features))[0][1]).name


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: a copy
        shutil.copy2(src, dst)


def deploy_files(report: ExportReport) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """{variant: (its export folder, [(file in the export folder, path in deploy/), ...])} for the variants of
    ``report`` that have a file of their own (their ``deploy`` path in :data:`compress.variants.VARIANTS`)."""
    isa = isa_suffix(report.cpu)
    return {name: (record.folder, report.spec(name).deploy_files(isa)) for name, record in report.variants.items()
            if report.spec(name).deploy}


def build_deploy_folder(run_dir: RunDir, report: ExportReport) -> Path:
    """(Re)build ``RUN/deploy/`` from ``student/`` and the student's current export (``report``: its parity.json)."""
    student, export = run_dir.student_dir, run_dir.export_dir()
    out = run_dir.path / "deploy"
    files: dict[str, str] = {}
    with atomic_directory(out) as tmp:
        for path in student.iterdir():
            if path.is_dir():
                shutil.copytree(path, tmp / path.name)
            else:
                _link(path, tmp / path.name)
        (tmp / "provenance.json").unlink(missing_ok=True)  # rewritten below with the file map
        for variant, (folder, pairs) in deploy_files(report).items():
            for src, dst in pairs:
                _link(export / folder / src, tmp / dst)
            files[variant] = pairs[0][1]
        for name, record in report.variants.items():  # a compile setting of another variant: that one's file
            if name not in files and record.folder in report.variants:
                files[name] = files.get(record.folder)
        write_provenance(tmp, stage="deploy", source=read_provenance(student),
                         files={k: v for k, v in files.items() if v},
                         parity={name: {"max_abs_diff": record.max_abs_diff, "mean_cosine": record.mean_cosine,
                                        "nn_agreement": record.nn_agreement} for name, record in report.variants.items()},
                         load={"torch": "SentenceTransformer(folder)", "onnx": 'SentenceTransformer(folder, backend="onnx")',
                               "openvino": 'SentenceTransformer(folder, backend="openvino")',
                               "other files": 'model_kwargs={"file_name": "<path in files>"}'})
        write_model_card(tmp, final=out)  # replaces the student's card (a hard link) with deploy/'s own
    return out
