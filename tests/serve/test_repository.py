"""The repository as served (serve/repository.py, serve/store.py): which model directories and versions
are candidates, what is refused and why, and when the server is ready."""

from __future__ import annotations

import shutil

import pytest

from serve.repository import Repository
from tests.conftest import quiet
from tests.versions import set_version_policy


@pytest.fixture
def repository_copy(repository, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(repository, copy)
    return copy


def test_tampered_model_is_refused_and_the_others_served(repository_copy):
    onnx_file = repository_copy / "zoo-mammal" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    (repository_copy / "not a model").mkdir()  # an invalid name is not a candidate
    (repository_copy / "empty").mkdir()
    repo = Repository(repository_copy).load_all(quiet)
    assert sorted(repo.models) == ["auto-mpg", "zoo-multiclass"]
    assert "does not match the sha256" in repo.failed["zoo-mammal"]
    assert repo.failed["empty"] == "missing manifest.json"
    assert not repo.ready  # strict: a refused model keeps the server not ready


def test_empty_repository_is_never_ready(tmp_path):
    repo = Repository(tmp_path).load_all(quiet)
    assert not repo.models and not repo.ready


def test_only_ascii_digits_without_leading_zeros_name_a_version(repository, tmp_path):
    """contract.repository's rule, Triton's: `01`, `²` or `1.0` beside `1` are not versions."""
    model = shutil.copytree(repository / "auto-mpg", tmp_path / "models" / "auto-mpg")
    for odd in ("01", "²", "1.0"):
        shutil.copytree(model / "1", model / odd)
    set_version_policy(tmp_path / "models", "version_policy: { all { } }")
    repo = Repository(tmp_path / "models").load_all(quiet)
    assert repo.index() == [{"name": "auto-mpg", "version": "1", "state": "READY"}] and repo.ready
