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
from export.openvino_export import IR_FILE


def quantized_onnx_name(features: dict[str, Any]) -> str:
    """sentence-transformers' name for a dynamically quantized ONNX file on this CPU's instruction set."""
    for flag, isa in (("avx512_vnni", "avx512_vnni"), ("avx512f", "avx512"), ("avx2", "avx2")):
        if features.get(flag):
            return f"model_qint8_{isa}.onnx"
    return "model_qint8_arm64.onnx" if os.uname().machine in ("arm64", "aarch64") else "model_qint8.onnx"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: a copy
        shutil.copy2(src, dst)


def deploy_files(report: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """{variant: (its export folder, [(file in the export folder → path in deploy/), ...])} for the variants of
    ``report`` (parity.json) that have a file of their own."""
    int8 = quantized_onnx_name(report.get("cpu", {}))
    names = {"fp32": [("model.onnx", "onnx/model.onnx")],
             "int8": [("model.onnx", f"onnx/{int8}")],
             "int8-qat": [("model.onnx", f"onnx/{int8.removesuffix('.onnx')}_qat.onnx")],
             "openvino-fp32": [(IR_FILE, f"openvino/{IR_FILE}"), ("openvino_model.bin", "openvino/openvino_model.bin")],
             "openvino-int8": [(IR_FILE, "openvino/openvino_model_qint8_quantized.xml"),
                               ("openvino_model.bin", "openvino/openvino_model_qint8_quantized.bin")],
             "openvino-int8-qat": [(IR_FILE, "openvino/openvino_model_qint8_quantized_qat.xml"),
                                   ("openvino_model.bin", "openvino/openvino_model_qint8_quantized_qat.bin")]}
    return {name: (report["variants"][name].get("folder", name), names[name]) for name in names if name in report["variants"]}


def build_deploy_folder(run_dir: RunDir, report: dict[str, Any]) -> Path:
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
        files["openvino-bf16"] = files["openvino-fp32"] if "openvino-bf16" in report["variants"] else None
        write_provenance(tmp, stage="deploy", source=read_provenance(student),
                         files={k: v for k, v in files.items() if v},
                         parity={k: {m: v[m] for m in ("max_abs_diff", "mean_cosine", "nn_agreement") if m in v}
                                 for k, v in report["variants"].items()},
                         load={"torch": "SentenceTransformer(folder)", "onnx": 'SentenceTransformer(folder, backend="onnx")',
                               "openvino": 'SentenceTransformer(folder, backend="openvino")',
                               "other files": 'model_kwargs={"file_name": "<path in files>"}'})
        write_model_card(tmp, final=out)  # replaces the student's card (a hard link) with deploy/'s own
    return out
