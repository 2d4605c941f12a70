"""Atomic publication (contract/publish.py): what is published is readable as the umask says, by other
users too (a server in a container runs as UID 1000, not as the user who exported)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from contract.publish import atomic_write, publish_dir, staging_dir
from export.repository import publish
from tests.permissions import read_as_nobody, shared_directory


def modes(root: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of `root` and everything below it."""
    paths = [root, *root.rglob("*")]
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in paths}


@pytest.fixture
def umask():
    def set_umask(value: int) -> None:
        os.umask(value)

    before = os.umask(0o022)
    yield set_umask
    os.umask(before)


@pytest.mark.parametrize(
    "mask,directory,file", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)], ids=["umask-022", "umask-027"]
)
def test_published_directories_and_files_follow_the_umask(tmp_path, umask, mask, directory, file):
    umask(mask)
    staged = staging_dir(tmp_path / "run")
    (staged / "report.json").write_text("{}")
    atomic_write(staged / "checkpoint.pt", lambda f: f.write(b"weights"))
    publish_dir(staged, tmp_path / "run")
    atomic_write(tmp_path / "run" / "report.json", lambda f: f.write(b"{}"))  # replaced in place
    assert modes(tmp_path / "run") == {("dir", directory), ("file", file)}


def test_a_published_model_is_readable_by_another_user(repository, umask):
    """An exported model (manifest, config, model.onnx under its directories) read as `nobody`."""
    manifest = json.loads((repository / "auto-mpg" / "manifest.json").read_text())
    with shared_directory() as shared:
        published = publish(
            shared / "models",
            "auto-mpg",
            repository / "auto-mpg" / "1" / "model.onnx",
            manifest,
            keep_versions=False,
        )
        assert modes(shared / "models" / "auto-mpg") == {("dir", 0o755), ("file", 0o644)}
        for path in (published, shared / "models" / "auto-mpg" / "manifest.json"):
            result = read_as_nobody(path)
            assert result.returncode == 0, result.stderr
            assert result.stdout == path.read_bytes()
