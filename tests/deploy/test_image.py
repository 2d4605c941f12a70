"""The serving image, built from this tree and run as users run it: `--read-only`, user 1000, the model
repository mounted read-only at /mnt/models, driven by stock tritonclient over HTTP and gRPC and checked
against the host's in-process runtime; metrics, a model published into the mounted repository, the
healthcheck, SIGTERM draining, baked models, the Kubernetes manifests' own arguments, the batch variant.

Needs podman (`make test` installs it as root, with the local base image); elsewhere these tests skip with
the reason. The image is rebuilt from the tree at the start (a cache hit when nothing changed)."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deploy import podman as tools
from deploy.manifests import documents, serving_containers
from deploy.runtime import load_runtime
from tests.deploy.containers import (
    assert_same_answers,
    exec_in,
    feature_rows,
    host_model,
    http_get,
    image_or_skip,
    infer_both,
    inspect_state,
    make_readable,
    output_names,
    readable_copy,
    running,
    wait_until,
)

TAG = "localhost/tabular-deploy:test"
RUNTIME = load_runtime()
SERVED_AT_START = ("zoo-mammal", "zoo-multiclass")  # auto-mpg is published while the container runs


@pytest.fixture(scope="module")
def image() -> str:
    return image_or_skip(TAG)


@pytest.fixture(scope="module")
def served(image, repository, tmp_path_factory):
    """One container on a copy of the repository without auto-mpg, polling it every 0.5 s."""
    mounted = readable_copy(repository, tmp_path_factory.mktemp("mounted"), leave_out=("auto-mpg",))
    with running(image, mounted, "--poll-s", "0.5") as (name, http_port, grpc_port):
        yield name, http_port, grpc_port, mounted


def compare_with_host(directory: Path, http_port: int, grpc_port: int, rows: int = 64) -> None:
    model = host_model(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    features = feature_rows(manifest, rows)
    names = output_names(manifest)
    expected = model.predict(features, names)
    for transport, got in infer_both(directory.name, features, names, http_port, grpc_port).items():
        assert_same_answers(expected, got, f"{directory.name} over {transport}")


def test_image_is_unprivileged_torch_free_and_follows_runtime_json(image):
    config = json.loads(tools.podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{RUNTIME.user}:{RUNTIME.user}"
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "serve", "serve"]  # exec'd: PID 1
    environment = dict(e.split("=", 1) for e in config["Env"])
    assert {k: environment.get(k) for k in RUNTIME.server_env()} == RUNTIME.server_env()
    assert set(config["ExposedPorts"]) == {f"{RUNTIME.http_port}/tcp", f"{RUNTIME.grpc_port}/tcp"}
    healthcheck = json.loads(
        tools.podman("image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout
    )
    assert healthcheck["Test"] == ["CMD", "/opt/venv/bin/python", "/opt/venv/bin/serve-healthcheck"]
    probe = (
        "import importlib.util as u, json, os, shutil; print(json.dumps({"
        "'modules': {m: u.find_spec(m) is not None"
        " for m in ('torch', 'pyarrow', 'onnx', 'pip', 'onnxruntime', 'serve')},"
        "'tools': {t: shutil.which(t) for t in ('gcc', 'cc', 'g++', 'curl')}, 'uid': os.getuid()}))"
    )
    result = tools.podman(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python", image, "-c", probe
    )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["modules"] == {
        "torch": False,
        "pyarrow": False,
        "onnx": False,
        "pip": False,  # not in the server's venv (a public base may have its own, outside it)
        "onnxruntime": True,
        "serve": True,
    }
    assert seen["tools"] == {"gcc": None, "cc": None, "g++": None, "curl": None}
    assert seen["uid"] == RUNTIME.user


def test_every_model_answers_like_the_host_runtime_over_http_and_grpc(served, repository):
    _, http_port, grpc_port, _ = served
    for name in SERVED_AT_START:
        compare_with_host(repository / name, http_port, grpc_port)


def test_metrics_count_the_requests_by_model(served, repository):
    _, http_port, grpc_port, _ = served

    def answered(model: str) -> float:
        status, text = http_get(http_port, RUNTIME.metrics)
        assert status == 200
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines()
            if line.startswith("inference_requests_total{")
            and f'model="{model}"' in line
            and 'status="200"' in line
        )

    before = answered("zoo-mammal")
    manifest = json.loads((repository / "zoo-mammal" / "manifest.json").read_text())
    for _ in range(3):  # 3 HTTP and 3 gRPC
        infer_both("zoo-mammal", feature_rows(manifest, 2), ["label"], http_port, grpc_port)
    assert answered("zoo-mammal") - before == 6


def test_root_file_system_and_repository_are_read_only_and_the_user_is_1000(served):
    name, _, _, _ = served
    for path in (f"{RUNTIME.repository}/written", "/opt/venv/written", "/written"):
        result = exec_in(name, "/opt/venv/bin/python", "-c", f"open({path!r}, 'w')")
        assert result.returncode != 0 and "Read-only file system" in result.stderr, path
    assert exec_in(
        name, "/opt/venv/bin/python", "-c", "import os; print(os.getuid(), os.getgid())"
    ).stdout.split() == [
        str(RUNTIME.user),
        str(RUNTIME.user),
    ]
    # the server runs on a port given as an argument, not SERVE_PORT's 8000: the healthcheck follows it
    assert tools.podman("healthcheck", "run", name, check=False).returncode == 0


def test_a_model_published_into_the_mounted_repository_is_served(served, repository):
    name, http_port, grpc_port, mounted = served
    assert http_get(http_port, "/v2/models/auto-mpg/ready")[0] != 200
    staged = mounted / ".auto-mpg.staging"  # published the way the export does: written aside, renamed in
    shutil.copytree(repository / "auto-mpg", staged)
    make_readable(staged)
    staged.rename(mounted / "auto-mpg")
    wait_until(lambda: http_get(http_port, "/v2/models/auto-mpg/ready")[0] == 200, 15, "auto-mpg ready", name)
    compare_with_host(repository / "auto-mpg", http_port, grpc_port)


def test_healthcheck_fails_while_the_server_is_not_ready(image, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o755)
    with running(image, empty, ready=False) as (name, http_port, _):
        wait_until(lambda: http_get(http_port, RUNTIME.liveness, 1)[0] == 200, 30, "live", name)
        assert http_get(http_port, RUNTIME.readiness)[0] == 503  # no models: not ready
        result = tools.podman("healthcheck", "run", name, check=False)
        assert result.returncode != 0, "healthy without a model"


def test_sigterm_drains_in_flight_requests_over_both_transports(image, repository, tmp_path):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    model = "zoo-multiclass"
    mounted = readable_copy(repository, tmp_path / "models")
    manifest = json.loads((mounted / model / "manifest.json").read_text())
    features = feature_rows(manifest, 1)
    expected = host_model(repository / model).predict(features, ["label", "probabilities"])
    with running(image, mounted, "--max-delay-us", "2000000") as (name, http_port, grpc_port):  # 2 s queued

        def one(k: int):
            module, port = (httpclient, http_port) if k % 2 else (grpcclient, grpc_port)
            client = module.InferenceServerClient(f"127.0.0.1:{port}")
            inputs = [module.InferInput("features", [1, features.shape[1]], "FP32")]
            inputs[0].set_data_from_numpy(features)
            result = client.infer(model, inputs)
            return {n: result.as_numpy(n) for n in ("label", "probabilities")}

        def queued() -> float:
            text = http_get(http_port, RUNTIME.metrics)[1].decode()
            prefix = f'inference_queue_requests{{model="{model}"}} '
            return next(
                (float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0
            )

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(one, k) for k in range(12)]
            wait_until(lambda: queued() >= 12, 10, "12 requests queued", name)
            start = time.monotonic()
            tools.podman("stop", "--time", "20", name)  # SIGTERM; SIGKILL only after 20 s
            stopped_in = time.monotonic() - start
            answers = [f.result(timeout=30) for f in futures]
        for got in answers:
            assert_same_answers(expected, got, "an in-flight request")
        assert inspect_state(name)["ExitCode"] == 0, "not a clean exit on SIGTERM"
        assert stopped_in < 15, f"podman stop took {stopped_in:.1f} s"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", http_port), timeout=1).close()


def test_baked_models_are_served_without_a_mount(repository, tmp_path):
    staged = readable_copy(repository, tmp_path / "baked")
    for model in tools.model_directories(staged):  # modes as the export leaves them: the image fixes them
        model.chmod(0o700)
    image = image_or_skip(f"{TAG}-baked", models=staged)
    with running(image, None) as (_, http_port, grpc_port):
        for name in ("auto-mpg", "zoo-mammal", "zoo-multiclass"):
            compare_with_host(repository / name, http_port, grpc_port, rows=8)


SERVING = serving_containers(documents())


@pytest.mark.parametrize(
    "where, container, pod_security, annotations, volumes", SERVING, ids=[s[0] for s in SERVING]
)
def test_the_image_starts_with_each_manifests_args_and_passes_its_probes(
    image, repository, tmp_path, where, container, pod_security, annotations, volumes
):
    mounted = readable_copy(repository, tmp_path / "models")
    security = {**pod_security, **container.get("securityContext", {})}
    user = f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
    name = f"tabular-manifest-{tmp_path.name[-12:]}".lower()
    command = ["run", "--detach", "--name", name, "--network", "none", "--user", user]  # its own network
    command += ["--read-only"] if security.get("readOnlyRootFilesystem") else []
    command += ["--volume", f"{mounted}:{RUNTIME.repository}:ro", image, *container["args"]]
    tools.podman(*command)
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            url = f"http://127.0.0.1:{get['port']}{get['path']}"
            check = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=1)"
            wait_until(
                lambda check=check: exec_in(name, "/opt/venv/bin/python", "-c", check).returncode == 0,
                30,
                f"{where} {probe}",
                name,
            )
        for port in container["ports"]:
            check = f"import socket; socket.create_connection(('127.0.0.1', {port['containerPort']}), 1)"
            assert exec_in(name, "/opt/venv/bin/python", "-c", check).returncode == 0, f"{where}: {port}"
    finally:
        tools.podman("rm", "--force", "--time", "0", name, check=False)


def test_batch_variant_predicts_a_table_like_the_host(repository, tmp_path):
    image = image_or_skip(f"{TAG}-batch", variant="batch")
    mounted = readable_copy(repository, tmp_path / "models", leave_out=("zoo-mammal", "zoo-multiclass"))
    data = tmp_path / "data"
    data.mkdir()
    manifest = json.loads((mounted / "auto-mpg" / "manifest.json").read_text())
    rows = feature_rows(manifest, 50, seed=1)
    names = [f["name"] for f in manifest["features"]]
    lines = [",".join(names)] + [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in rows]
    (data / "cars.csv").write_text("\n".join(lines) + "\n")
    make_readable(data)
    predict = ["-m", "serve", "predict", "--model", f"{RUNTIME.repository}/auto-mpg"]
    in_container = tools.podman(
        "run", "--rm", "--network", "none", "--read-only", "--user", f"{RUNTIME.user}:{RUNTIME.user}",
        "--volume", f"{mounted}:{RUNTIME.repository}:ro", "--volume", f"{data}:/data:ro",
        "--entrypoint", "/opt/venv/bin/python", image, *predict, "--data", "/data/cars.csv",
    ).stdout  # fmt: skip
    on_host = subprocess.run(
        [sys.executable, *predict[:-1], str(mounted / "auto-mpg"), "--data", str(data / "cars.csv")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = np.array([float(v) for v in in_container.splitlines()[1:]])
    want = np.array([float(v) for v in on_host.splitlines()[1:]])
    assert in_container.splitlines()[0] == on_host.splitlines()[0] and len(got) == 50
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
