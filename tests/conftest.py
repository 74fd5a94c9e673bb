"""Shared fixtures: tiny random teachers built once per session, and a private copy of one for each test.

``tiny_<family>_dir_shared`` (session) is built once and must not be modified; ``tiny_<family>_dir`` (function)
is a fresh ``copytree`` of it under the test's ``tmp_path``, safe to corrupt or overwrite. Families: bert,
roberta, xlmr (see reference/tiny_models.py for their tokenizers and special-token ids).
"""

import os
import shutil
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from tests that start processes

import pytest  # noqa: E402
import torch  # noqa: E402

# Without a GPU, Triton kernels run on CPU tensors under Triton's interpreter (read when a kernel is defined, so
# before compress.relation_kernel is first imported); CLI tests started as subprocesses inherit it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from reference.tiny_models import BUILDERS, write_corpus  # noqa: E402

FAMILIES = tuple(BUILDERS)  # ("bert", "roberta", "xlmr"): also the test ids of tiny_teacher_dir


def _build(tmp_path_factory, family: str) -> Path:
    return BUILDERS[family](tmp_path_factory.mktemp(f"tiny-{family}-shared"))


def _copy(request, family: str, dest: Path) -> Path:
    return Path(shutil.copytree(request.getfixturevalue(f"tiny_{family}_dir_shared"), dest))


@pytest.fixture(scope="session")
def tiny_bert_dir_shared(tmp_path_factory) -> Path:
    """Session-wide tiny BERT folder (read-only)."""
    return _build(tmp_path_factory, "bert")


@pytest.fixture(scope="session")
def tiny_roberta_dir_shared(tmp_path_factory) -> Path:
    """Session-wide tiny RoBERTa folder (read-only)."""
    return _build(tmp_path_factory, "roberta")


@pytest.fixture(scope="session")
def tiny_xlmr_dir_shared(tmp_path_factory) -> Path:
    """Session-wide tiny XLM-R folder (read-only)."""
    return _build(tmp_path_factory, "xlmr")


@pytest.fixture(params=FAMILIES, ids=FAMILIES)
def tiny_teacher_dir_shared(request) -> Path:
    """Each family's session-wide folder in turn (read-only)."""
    return request.getfixturevalue(f"tiny_{request.param}_dir_shared")


@pytest.fixture
def tiny_bert_dir(request, tmp_path) -> Path:
    """This test's own copy of the tiny BERT."""
    return _copy(request, "bert", tmp_path / "tiny-bert")


@pytest.fixture
def tiny_roberta_dir(request, tmp_path) -> Path:
    """This test's own copy of the tiny RoBERTa."""
    return _copy(request, "roberta", tmp_path / "tiny-roberta")


@pytest.fixture
def tiny_xlmr_dir(request, tmp_path) -> Path:
    """This test's own copy of the tiny XLM-R."""
    return _copy(request, "xlmr", tmp_path / "tiny-xlmr")


@pytest.fixture(params=FAMILIES, ids=FAMILIES)
def tiny_teacher_dir(request, tmp_path) -> Path:
    """This test's own copy of each family's tiny teacher in turn (ids bert, roberta, xlmr)."""
    return _copy(request, request.param, tmp_path / f"teacher-{request.param}")


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    """SAMPLE_TEXT as a UTF-8 text file, one line per sentence."""
    return write_corpus(tmp_path / "corpus.txt")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Prepared corpora and other cached files go to a folder of this test session, not the user's cache
    (tests that need their own cache set RELATION_COMPRESS_CACHE themselves)."""
    old = os.environ.get("RELATION_COMPRESS_CACHE")
    os.environ["RELATION_COMPRESS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("RELATION_COMPRESS_CACHE", None)
    else:
        os.environ["RELATION_COMPRESS_CACHE"] = old


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` where CUDA is absent (they are deselected by default anyway)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def distilled(tiny_teacher_dir, corpus_file, tmp_path, capsys):
    """A run folder holding a finished (2-step) distillation of a tiny teacher (each family)."""
    from tests.cli_runner import TINY_DISTILL, run_cli

    run_dir = tmp_path / "run"
    result = run_cli(["distill", "--teacher", tiny_teacher_dir, "--corpus", corpus_file, "--run-dir", run_dir,
                      *TINY_DISTILL], capsys)
    assert result.code == 0, result.stderr
    return run_dir
