"""Trust boundaries: what the server loads, how it binds, what checkpoints may contain."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from pipeline.config import tomllib
from tests.conftest import ROOT
from tests.serving import free_port

BATCH = ROOT / "serve" / "predict"  # `serve predict`: the only part of serve/ that may use the batch extra
UNPICKLING = re.compile(r"\b(pickle|cPickle|dill|joblib|torch\.load|allow_pickle|marshal\.loads|shelve)\b")


def test_the_server_never_unpickles():
    sources = {p: p.read_text() for p in (ROOT / "serve").rglob("*.py")}
    assert sources
    assert {
        str(p.name): UNPICKLING.findall(text) for p, text in sources.items() if UNPICKLING.search(text)
    } == {}


def test_default_bind_is_loopback_and_said_at_start(repository):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serve", "serve", "--repository", str(repository), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        for line in process.stdout:
            if line.startswith("ready"):
                break
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = {fields.split()[1] for fields in listening if fields.split()[3] == "0A"}  # LISTEN sockets
    finally:
        process.terminate()
        process.wait(10)
    assert first == f"serving {repository} on http://127.0.0.1:{port} (loopback only; no authentication)\n"
    assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local


def test_runtime_installs_without_the_training_extra():
    """serve/ imports only the standard library and the base dependencies of pyproject.toml; batch
    prediction's modules may add the `batch` extra (pyarrow)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {re.split(r"[<>=!;\[ ]", r, maxsplit=1)[0].lower().replace("-", "_") for r in requirements}

    base, batch = names(project["dependencies"]), names(project["optional-dependencies"]["batch"])
    assert not (base | batch) & {"torch", "onnx", "onnxscript"}
    import_names = {"grpcio": "grpc", "protobuf": "google"}  # distributions imported by another name
    provided = {import_names.get(n, n) for n in base} | {"serve", "contract"}
    outside = set()
    paths = sorted((ROOT / "serve").rglob("*.py"))
    assert BATCH / "__init__.py" in paths
    for path in paths:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
        allowed = provided | (batch if path.is_relative_to(BATCH) else set())
        outside |= imported - set(sys.stdlib_module_names) - allowed
    assert sorted(outside) == []
