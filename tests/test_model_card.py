"""Model cards (README.md) in every folder a run produces: built through the real CLI on a tiny run, parsed back with
huggingface_hub's ModelCard, and checked for the Hub metadata, the licence carried from the teacher's own card,
loading lines that name files in the folder (the ONNX Runtime lines are run), and the bench table after a refresh."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from compress.errors import UserError
from compress.model_card import MARKER, corpus_languages, model_folders, refresh_model_cards, write_model_card
from tests.cli_runner import TINY_DISTILL, run_cli
from tests.test_finetune import write_toy_task

OPENVINO = importlib.util.find_spec("openvino") is not None
FAST = ["--batch-sizes", "1", "--seq-lengths", "16", "--min-time", "0.01", "--warmup", "1", "min_runs=3"]


class _Quiet:  # a module-scoped fixture cannot use capsys; run_cli only calls readouterr()
    def readouterr(self):
        return type("Out", (), {"out": "", "err": ""})()


@pytest.fixture(scope="module")
def card_run(tmp_path_factory, tiny_bert_dir_shared):
    """A tiny run whose teacher's card says ``license: mit``: distilled, exported (INT8, OpenVINO where installed),
    its teacher exported, and a fine-tuned classifier exported."""
    base = tmp_path_factory.mktemp("cards")
    teacher = Path(shutil.copytree(tiny_bert_dir_shared, base / "teacher-mit"))
    (teacher / "README.md").write_text("---\nlicense: mit\n---\n\n# A tiny teacher\n", encoding="utf-8")
    from reference.tiny_models import write_corpus

    corpus = write_corpus(base / "english.txt")
    spec = write_toy_task(base, epochs=1, sizes=(64, 16, 40))
    run, quiet = base / "run", _Quiet()
    assert run_cli(["distill", "--teacher", teacher, "--corpus", corpus, "--run-dir", run, *TINY_DISTILL], quiet).code == 0
    assert run_cli(["export", run, "--int8", *(["--runtime", "all"] if OPENVINO else [])], quiet).code == 0
    assert run_cli(["export", run, "--model", "teacher"], quiet).code == 0
    assert run_cli(["finetune", run, "--task", spec, "--name", "toy"], quiet).code == 0
    assert run_cli(["export", run, "--model", "toy"], quiet).code == 0
    return {"run": run, "teacher": teacher, "corpus": corpus, "toy": spec}


def _card(folder: Path) -> ModelCard:
    return ModelCard.load(folder / "README.md")


def test_every_folder_has_a_card_with_hub_metadata(card_run):
    run = card_run["run"]
    folders = model_folders(run)
    expected = {run / "student", run / "deploy", run / "export" / "fp32", run / "export" / "int8",
                run / "export" / "teacher" / "fp32", run / "export" / "toy" / "fp32"}
    if OPENVINO:
        expected |= {run / "export" / "openvino-fp32", run / "export" / "openvino-int8"}
    assert set(folders) == expected
    for folder in folders:
        card = _card(folder)
        data = card.data
        assert card.text.lstrip().startswith(MARKER), folder
        distilled = folder.parent.name not in ("teacher", "toy")
        assert data.base_model == "teacher-mit" and data.license == "mit", folder
        # languages come from the distillation's corpora (english.txt): not claimed for the teacher's own export
        assert data.language == (["en"] if distilled else None), folder
        tags = set(data.tags)
        if folder.parent.name == "toy":  # a fine-tuned classification head: no sentence-transformers modules
            assert (data.library_name, data.pipeline_tag) == ("transformers", "text-classification")
        elif folder.parent.name == "teacher":  # a plain BERT teacher (no modules.json): hidden states
            assert (data.library_name, data.pipeline_tag) == ("transformers", "feature-extraction")
        else:
            assert (data.library_name, data.pipeline_tag) == ("sentence-transformers", "sentence-similarity"), folder
        assert ("sentence-transformers" in tags) == (folder / "modules.json").is_file()
        assert ("distillation" in tags) == distilled, folder
        assert {"minilmv2", "relation-distillation"} <= tags or not distilled, folder
        assert ("onnx" in tags) == any(folder.rglob("*.onnx")), folder
        assert ("openvino" in tags) == any(folder.rglob("openvino*.xml")), folder
        assert ("int8" in tags) == (folder.name in ("int8", "openvino-int8") or folder.name == "deploy"), folder
    student = _card(run / "student").text
    assert "relations taken from its layer" in student and "english.txt" in student and "2 steps" in student
    int8 = _card(run / "export" / "int8").text
    assert "Gate: mean cosine" in int8 and "passed" in int8 and "dynamic quantization" in int8
    assert "text-embeddings-inference" in _card(run / "deploy").data.tags
    assert not [p for p in run.rglob(".README.md*")], "temporary card files left behind"


def test_loading_lines_name_files_that_exist(card_run):
    run = card_run["run"]
    for folder in model_folders(run):
        text = (folder / "README.md").read_text(encoding="utf-8")
        for name in re.findall(r'"file_name": "([^"]+)"', text):
            assert (folder / name).is_file(), (folder, name)
        for call in ("InferenceSession", "compile_model"):
            for path in re.findall(rf'{call}\("([^"]+)"', text):
                assert Path(path).is_file() and Path(path).parent.resolve().is_relative_to(folder.resolve()), path
        for path in re.findall(r'(?:SentenceTransformer|from_pretrained)\("([^"]+)"', text):
            assert Path(path) == folder, (folder, path)
        if (folder / "modules.json").is_file():
            assert f'SentenceTransformer("{folder}"' in text
        if (folder / "model.safetensors").is_file():
            assert f'AutoModel.from_pretrained("{folder}")' in text or "AutoModelForSequenceClassification" in text
    deploy = (run / "deploy" / "README.md").read_text(encoding="utf-8")
    assert "--model-id /data/deploy" in deploy and f'realpath {run / "deploy"}' in deploy
    assert '"file_name": "onnx/model.onnx"' in deploy and (run / "deploy" / "onnx" / "model.onnx").is_file()


def _python_block(text: str, first_line: str) -> str:
    return next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith(first_line))


def test_the_onnx_runtime_lines_run(card_run):
    """The card's ONNX Runtime block, executed as written, gives the model's output for the example sentence."""
    for folder in (card_run["run"] / "export" / "int8", card_run["run"] / "deploy"):
        code = _python_block((folder / "README.md").read_text(encoding="utf-8"), "import onnxruntime")
        code = code.split("\nfrom optimum")[0]  # the optimum lines are optional (not installed on transformers 5)
        scope: dict = {}
        exec(code, scope)
        assert scope["outputs"][0].shape[0] == 1 and scope["outputs"][0].shape[-1] == 32


def test_no_license_when_the_teacher_card_states_none(tiny_bert_dir, corpus_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(["distill", "--teacher", tiny_bert_dir, "--corpus", corpus_file, "--run-dir", run, *TINY_DISTILL],
                   capsys).code == 0
    data = _card(run / "student").data
    assert data.license is None and "license" not in data.to_dict()
    assert data.base_model == tiny_bert_dir.name and data.library_name == "sentence-transformers"
    assert data.language is None  # corpus.txt names no language: omitted, not guessed


def test_bench_refresh_puts_the_table_into_the_cards(card_run, capsys):
    run = card_run["run"]
    before = (run / "export" / "int8" / "README.md").read_text(encoding="utf-8")
    assert "## Benchmark" not in before
    result = run_cli(["bench", run, "--task", card_run["toy"], *FAST], capsys)
    assert result.code == 0, result.stderr
    results = json.loads((run / "bench" / "results.json").read_text())
    written = refresh_model_cards(run)
    assert set(written) == {f / "README.md" for f in model_folders(run)}
    for folder in model_folders(run):
        text = (folder / "README.md").read_text(encoding="utf-8")
        assert "## Benchmark" in text and "toy (accuracy)" in text, folder
        for v in results["variants"]:
            assert v["name"] in text
        for plot in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):  # plots linked relatively, into RUN/bench/
            assert (folder / plot).is_file(), (folder, plot)
        ModelCard.load(folder / "README.md")
    assert "**student-int8**" in (run / "export" / "int8" / "README.md").read_text(encoding="utf-8")
    assert "**student-fp32**" in (run / "deploy" / "README.md").read_text(encoding="utf-8")


def test_a_stale_bench_is_not_shown_as_this_folders(card_run, tmp_path):
    """A folder newer than the run's bench (a re-export) says the bench predates it instead of showing old figures."""
    run = card_run["run"]
    results = run / "bench" / "results.json"
    if not results.is_file():
        pytest.skip("needs the bench of test_bench_refresh_puts_the_table_into_the_cards")
    folder = run / "export" / "fp32"
    facts = json.loads((folder / "provenance.json").read_text())
    saved = dict(facts)
    facts["created"] = "2999-01-01T00:00:00+00:00"
    (folder / "provenance.json").write_text(json.dumps(facts))
    try:
        text = write_model_card(folder).read_text(encoding="utf-8")
        assert "predates this folder" in text and "| student-fp32" not in text
    finally:
        (folder / "provenance.json").write_text(json.dumps(saved))
        write_model_card(folder)


def test_a_folder_we_did_not_make_keeps_its_readme(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "README.md").write_text("# mine\n")
    with pytest.raises(UserError, match="not made by relation-compress"):
        write_model_card(folder)
    assert (folder / "README.md").read_text() == "# mine\n"


def test_corpus_languages_from_file_names():
    assert corpus_languages(["/c/english.txt", "/c/german.txt.gz", "/f/de.txt", "/c/hinglish.txt", "/x/corpus.txt"]) == ["en", "de"]
    assert corpus_languages(["/c/traditionalchinese.txt", "/c/chinese.txt"]) == ["zh"]
