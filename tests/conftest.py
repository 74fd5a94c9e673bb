"""Shared fixtures: tiny teachers built once per session, each test given its own copy."""

import shutil

import pytest
import torch

from tests.tiny_teachers import BUILDERS, write_corpus


@pytest.fixture(scope="session")
def _built_teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def _copy(built, name, tmp_path):
    return shutil.copytree(built[name], tmp_path / f"teacher-{name}")


@pytest.fixture
def tiny_bert_dir(_built_teachers, tmp_path):
    return _copy(_built_teachers, "bert", tmp_path)


@pytest.fixture(params=sorted(BUILDERS), ids=sorted(BUILDERS))
def tiny_teacher_dir(request, _built_teachers, tmp_path):
    return _copy(_built_teachers, request.param, tmp_path)


@pytest.fixture
def corpus_file(tmp_path):
    return write_corpus(tmp_path / "corpus.txt")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
