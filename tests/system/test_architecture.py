"""The architecture as checked configuration: the import-linter contracts in pyproject.toml hold on this
tree, and each one breaks when a forbidden import is planted in a copy (so none of them is vacuous)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("contract", "pipeline", "export", "serve")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PLANTED = {  # contract id → (file, the forbidden import planted at its end)
    "contract-stdlib": ("contract/repository.py", "import numpy"),
    "pipeline-layers": ("pipeline/data/encoding.py", "import pipeline.training.models"),
    "data-without-torch": ("pipeline/data/cells.py", "import torch"),
    "network-without-data": ("pipeline/training/models.py", "import pipeline.data.table"),
    "export-not-serve": ("export/onnx.py", "import serve.errors"),
    "serve-torch-free": ("serve/errors.py", "import torch"),
    "serve-layers": ("serve/model.py", "import serve.dataplane"),
    "serve-core-without-transports": ("serve/repository.py", "import grpc"),
    "server-without-pyarrow": ("serve/http/codec.py", "import pyarrow"),
}


def lint_imports(tree: Path, *contracts: str) -> subprocess.CompletedProcess:
    flags = [f"--contract={c}" for c in contracts]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *flags, "pyproject.toml"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


def contract_ids() -> list[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["id"] for c in config["tool"]["importlinter"]["contracts"]]


@pytest.fixture
def tree(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_every_contract_holds_on_this_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Contracts: {len(contract_ids())} kept, 0 broken." in result.stdout


def test_every_contract_has_a_planted_import():
    assert sorted(PLANTED) == sorted(contract_ids())


@pytest.mark.parametrize("contract", sorted(PLANTED))
def test_a_planted_forbidden_import_breaks_its_contract(tree, contract):
    path, statement = PLANTED[contract]
    assert lint_imports(tree, contract).returncode == 0  # the copy holds before the plant
    with (tree / path).open("a") as f:
        f.write(f"\n{statement}\n")
    result = lint_imports(tree, contract)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and statement.split()[-1] in result.stdout


def test_contract_is_standard_library_only():
    """Beside import-linter's list of forbidden packages: every import in contract/ is stdlib."""
    imported = set()
    for path in (ROOT / "contract").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - {"__future__", "contract"}
    assert imported and outside == set()
