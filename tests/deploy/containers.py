"""What the image tests share: the image built from the tree under test (or the reason the tests skip), a
container run as users run it (deploy/podman.py's run_command), the host runtime's answers to compare
with, and a model repository the container's user can read."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from deploy import podman as tools
from serve.model import Model


def quiet(*args, **kwargs) -> None:
    pass


def image_or_skip(tag: str, **build) -> str:
    """Build deploy/Containerfile from this tree as `tag` (a cache hit when nothing changed). Where podman
    cannot run containers and we are not root, skip with the reason; as root (CI), that is a failure."""
    reason = tools.podman_unusable()
    if reason:
        if tools.is_root():
            pytest.fail(f"the image tests need podman: {reason}")
        pytest.skip(f"image tests: {reason}")
    try:
        tools.build_image(tag, log=quiet, quiet=True, **build)
    except tools.DeployError as exc:
        if tools.is_root():
            raise
        pytest.skip(f"image tests: {exc}")
    return tag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readable_copy(repository: Path, dest: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """A copy of the repository the container's user (1000) can read. The export publishes model
    directories with mode 0700 (its staging directory comes from mkdtemp): see the deploy report."""
    dest.mkdir(parents=True, exist_ok=True)
    for model in tools.model_directories(repository):
        if model.name not in leave_out:
            shutil.copytree(model, dest / model.name)
    make_readable(dest)
    return dest


def make_readable(path: Path) -> None:
    for entry in [path, *path.rglob("*")]:
        entry.chmod(0o755 if entry.is_dir() else 0o644)


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(predicate, timeout: float, what: str, name: str | None = None) -> float:
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > timeout:
            logs = f"\n--- container log ---\n{container_log(name)}" if name else ""
            raise AssertionError(f"{what} not within {timeout:g} s{logs}")
        time.sleep(0.05)


def container_log(name: str) -> str:
    result = tools.podman("logs", name, check=False)
    return (result.stdout + result.stderr)[-4000:]


@contextlib.contextmanager
def running(image: str, repository: Path | None, *server_args: str, ready: bool = True):
    """The image run as users run it (host network, read-only root, user 1000, repository read-only), on
    free ports; yields (name, http port, grpc port). Removed afterwards, whatever happened."""
    name = f"tabular-test-{uuid.uuid4().hex[:8]}"
    http_port, grpc_port = free_port(), free_port()
    command = tools.run_command(
        image,
        repository,
        http_port=http_port,
        grpc_port=grpc_port,
        name=name,
        detach=True,
        remove=False,
        server_args=server_args,
    )
    tools.podman(*command)
    try:
        if ready:
            wait_until(lambda: http_get(http_port, "/v2/health/ready", 1)[0] == 200, 30, "ready", name)
        yield name, http_port, grpc_port
    finally:
        tools.podman("rm", "--force", "--time", "0", name, check=False)


def inspect_state(name: str) -> dict:
    return json.loads(tools.podman("inspect", "--format", "{{json .State}}", name).stdout)


def exec_in(name: str, *command: str):
    return tools.podman("exec", name, *command, check=False)


# -- the host runtime's answers ---------------------------------------------------------------------------
def host_model(directory: Path):
    """serve.model's in-process model of the same directory."""
    return Model.load(directory)


def feature_rows(manifest: dict, n: int, seed: int = 0) -> np.ndarray:
    """Rows around the training distribution, with missing values and never-seen category codes."""
    rng = np.random.default_rng(seed)
    columns = []
    for feature in manifest["features"]:
        if feature["kind"] == "categorical":
            codes = [*map(float, feature["categories"]), 999.0]  # 999: never seen in training
            column = rng.choice(codes, size=n)
        else:
            column = feature["mean"] + feature["std"] * rng.standard_normal(n)
        column[rng.random(n) < 0.1] = np.nan  # missing: imputed inside the graph
        columns.append(column)
    return np.stack(columns, axis=1).astype(np.float32)


def output_names(manifest: dict) -> list[str]:
    return [o["name"] for o in manifest["outputs"]]


def assert_same_answers(expected: dict, got: dict, where: str) -> None:
    assert set(got) == set(expected), where
    for name, value in expected.items():
        if value.dtype.kind in "iu":
            np.testing.assert_array_equal(got[name].reshape(value.shape), value, err_msg=f"{where}: {name}")
        else:  # the project's parity rule (DESIGN §5); the same onnxruntime on the same bytes agrees exactly
            np.testing.assert_allclose(
                got[name].reshape(value.shape), value, rtol=1e-5, atol=1e-5, err_msg=f"{where}: {name}"
            )


def infer_both(model: str, features: np.ndarray, names: list[str], http_port: int, grpc_port: int):
    """{transport: {output: array}} from stock tritonclient, HTTP (binary, its default) and gRPC."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    answers = {}
    for transport, module, port in (("http", httpclient, http_port), ("grpc", grpcclient, grpc_port)):
        client = module.InferenceServerClient(f"127.0.0.1:{port}")
        inputs = [module.InferInput("features", list(features.shape), "FP32")]
        inputs[0].set_data_from_numpy(features)
        result = client.infer(model, inputs, outputs=[module.InferRequestedOutput(n) for n in names])
        answers[transport] = {n: result.as_numpy(n) for n in names}
        client.close()
    return answers
