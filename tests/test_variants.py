"""The export variant table (compress.variants) and the typed records of parity.json."""

import json

import pytest
from pydantic import ValidationError

from compress.errors import UserError
from compress.run_dir import PARITY_FILE, RunDir
from compress.variants import BY_NAME, QAT_WORK, VARIANT_FOLDERS, VARIANTS, ExportReport
from export.builders import BUILDERS
from export.deploy import isa_suffix, quantized_onnx_name

FIGURES = {"max_abs_diff": 1e-6, "mean_cosine": 1.0, "min_cosine": 1.0, "nn_agreement": 1.0, "samples": 8,
           "size_bytes": 1000}


def test_every_row_has_a_builder_and_every_builder_a_row():
    assert set(BUILDERS) == set(BY_NAME)


def test_the_table_keeps_its_own_rules():
    names = [v.name for v in VARIANTS]
    for spec in VARIANTS:
        if spec.source:  # built after what it is made from
            assert names.index(spec.source) < names.index(spec.name)
        assert spec.has_folder == (spec.folder == spec.name)
        assert spec.gate == ("fp32" if spec.precision == "fp32" else "cosine")
    assert BY_NAME["openvino-bf16"].folder == "openvino-fp32" and BY_NAME["openvino-bf16"].deploy is None
    assert set(QAT_WORK) == {v.name for v in VARIANTS if v.made_with == "qat"}
    assert "openvino-bf16" not in VARIANT_FOLDERS


def test_deploy_names_follow_sentence_transformers():
    assert quantized_onnx_name({"avx512_vnni": True}) == "model_qint8_avx512_vnni.onnx"
    assert isa_suffix({"avx2": True}) == "_avx2"
    assert BY_NAME["int8"].deploy_files("") == [("model.onnx", "onnx/model_qint8.onnx")]
    assert BY_NAME["openvino-int8-qat"].deploy_files("_avx2") == [
        ("openvino_model.xml", "openvino/openvino_model_qint8_quantized_qat.xml"),
        ("openvino_model.bin", "openvino/openvino_model_qint8_quantized_qat.bin")]


def test_a_report_from_before_the_records_were_typed_is_completed_from_the_table():
    old = {"cpu": {}, "model": "student", "variants": {"fp32": FIGURES, "openvino-bf16": FIGURES}}
    report = ExportReport.model_validate(old)
    bf16 = report.variants["openvino-bf16"]
    assert (bf16.runtime, bf16.folder, bf16.file, bf16.precision) == ("openvino", "openvino-fp32", "openvino_model.xml", "bf16")
    assert report.variants["fp32"].path("x").as_posix() == "x/fp32/model.onnx"
    assert ExportReport.model_validate_json(json.dumps(report.dump())) == report


def test_a_misspelt_fact_or_an_unknown_variant_is_refused():
    with pytest.raises(ValidationError, match="methdo"):
        ExportReport.model_validate({"cpu": {}, "model": "student", "variants": {"int8": {**FIGURES, "methdo": "dynamic"}}})
    with pytest.raises(ValidationError, match="unknown variants"):
        ExportReport.model_validate({"cpu": {}, "model": "student", "variants": {"fp16": FIGURES}})


def test_a_damaged_parity_file_is_one_line(tmp_path):
    (tmp_path / "export").mkdir()
    assert RunDir(tmp_path).export_report() is None
    (tmp_path / "export" / PARITY_FILE).write_text("{not json")
    with pytest.raises(UserError, match="is damaged") as err:
        RunDir(tmp_path).export_report()
    assert "\n" not in str(err.value)
