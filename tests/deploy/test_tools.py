"""deploy/'s own logic, without podman: the Debian mirror the base image comes from, the healthcheck's
address, the image's requirements per variant, the run command's protections, and the one-line errors of
`python -m deploy` for a repository the container cannot read or a MODELS= without models."""

from __future__ import annotations

import pytest

from deploy import healthcheck
from deploy import podman as tools
from deploy.requirements import requirements
from deploy.runtime import load_runtime
from tests.conftest import ROOT, run_cli

RUNTIME = load_runtime()


def test_debian_mirror_is_read_from_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    assert tools.debian_mirror(tmp_path) == tools.DEBIAN_MIRROR  # nothing configured
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert tools.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://one.example/debian bookworm main\n"
    )
    assert tools.debian_mirror(tmp_path) == "http://one.example/debian"  # sources.list is read first


@pytest.mark.parametrize(
    "argv, environ, url",
    [
        ([], {}, "http://127.0.0.1:8000/v2/health/ready"),
        ([], {"SERVE_PORT": "9000", "SERVE_HOST": "0.0.0.0"}, "http://127.0.0.1:9000/v2/health/ready"),
        (
            ["python", "-m", "serve", "serve", "--port", "9100"],
            {"SERVE_PORT": "9000"},
            "http://127.0.0.1:9100/v2/health/ready",
        ),
        (["python", "--port=9200", "--host=::"], {}, "http://[::1]:9200/v2/health/ready"),
        (
            ["python", "--host", "10.0.0.7", "--port", "1", "--port", "9300"],
            {},
            "http://10.0.0.7:9300/v2/health/ready",
        ),
    ],
)
def test_healthcheck_asks_where_the_server_listens(argv, environ, url):
    assert healthcheck.ready_url(argv, environ) == url


def test_requirements_per_variant_come_from_pyproject():
    runtime = requirements(ROOT / "pyproject.toml", "runtime")
    batch = requirements(ROOT / "pyproject.toml", "batch")
    names = [r.split(">")[0].split("=")[0].split(";")[0].strip().lower() for r in runtime]
    assert "onnxruntime" in names and not {"torch", "pyarrow", "onnx"} & set(names)
    assert batch[: len(runtime)] == runtime and any(r.startswith("pyarrow") for r in batch[len(runtime) :])
    with pytest.raises(ValueError, match="VARIANT must be one of runtime, batch"):
        requirements(ROOT / "pyproject.toml", "train")


def test_run_command_is_read_only_unprivileged_and_mounts_the_repository_read_only(tmp_path):
    command = tools.run_command("img", tmp_path, http_port=18000, grpc_port=18001)
    assert command[:2] == ["run", "--network"] and "--read-only" in command
    assert command[command.index("--user") + 1] == f"{RUNTIME.user}:{RUNTIME.user}"
    assert command[command.index("--volume") + 1] == f"{tmp_path}:{RUNTIME.repository}:ro"
    assert command[command.index("img") + 1 :] == [
        "--host",
        "127.0.0.1",
        "--port",
        "18000",
        "--grpc-port",
        "18001",
    ]
    assert "--volume" not in tools.run_command("img", None, http_port=1, grpc_port=2)  # baked models


def test_a_payload_log_is_written_to_its_host_directory_mounted_writable(tmp_path):
    command = tools.run_command(
        "img", None, http_port=1, grpc_port=2, payload_log=tmp_path / "p.jsonl", server_args=("--poll-s", "0")
    )
    assert command[command.index("--volume") + 1] == f"{tmp_path}:{tools.PAYLOAD_LOGS}"  # not :ro
    assert command[command.index("img") + 7 :] == [
        "--payload-log",
        f"{tools.PAYLOAD_LOGS}/p.jsonl",
        "--poll-s",
        "0",
    ]
    tmp_path.chmod(0o755)
    if tmp_path.stat().st_uid != RUNTIME.user:
        with pytest.raises(
            tools.DeployError, match=f"is not writable by the container's user {RUNTIME.user}"
        ):
            tools.check_payload_log(tmp_path / "p.jsonl")
    tmp_path.chmod(0o777)
    tools.check_payload_log(tmp_path / "p.jsonl")


def test_a_repository_the_container_cannot_read_is_refused_in_one_line(tmp_path):
    model = tmp_path / "models" / "zoo"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text("")
    for path in (tmp_path / "models", model, model / "1"):
        path.chmod(0o755)
    (model / "config.pbtxt").chmod(0o644)
    tools.check_repository(tmp_path / "models")  # readable: no error
    model.chmod(0o700)  # as the export's staging directory (mkdtemp) leaves it
    repository = str(tmp_path / "models")  # (an image that is nowhere: nothing may start in any case)
    result = run_cli(
        "-m", "deploy", "run-image", "--repository", repository, "--image", "localhost/nowhere:0"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {model} (mode 700) is not readable by the container's user {RUNTIME.user}: "
        f"chmod -R a+rX {tmp_path / 'models'}"
    )


def test_baking_a_directory_without_models_is_refused_before_any_build(tmp_path):
    result = run_cli("-m", "deploy", "image", "--models", str(tmp_path))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path} holds no model (a directory with config.pbtxt): run `make all` first"
    )
    result = run_cli("-m", "deploy", "image", "--variant", "train")
    assert (
        result.returncode == 2
        and result.stderr.strip() == "error: VARIANT must be one of runtime, batch, not 'train'"
    )
