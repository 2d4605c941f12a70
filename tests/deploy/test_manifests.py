"""The Kubernetes manifests in deploy/kubernetes/: each validates against its kind's own schema (core kinds
with kubernetes-validate at the pinned Kubernetes version, KServe and Kubeflow kinds against their CRDs'
schemas in deploy/schemas/), a misspelt field is refused for every kind, and every manifest that runs the
serving image says what deploy/runtime.json says (args, ports, probes, user, metrics), as the image does.
tests/deploy/test_image.py starts the image with each of these manifests' args and probes."""

from __future__ import annotations

import copy
import re

import pytest
import tomllib

from deploy.manifests import (
    MANIFESTS,
    ROOT,
    custom_schema_path,
    describe,
    documents,
    schema_errors,
    serving_containers,
)
from deploy.runtime import load_runtime

RUNTIME = load_runtime()
DOCS = documents()
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def doc_id(item) -> str:
    path, doc = item
    return f"{path.name}:{doc['kind']}:{doc['metadata']['name']}"


@pytest.mark.parametrize("item", DOCS, ids=doc_id)
def test_every_manifest_validates_against_its_kinds_schema(item):
    _, doc = item
    assert schema_errors(doc) == []


def test_every_kind_is_shipped_and_a_misspelt_or_mistyped_field_is_refused():
    kinds = {(doc["apiVersion"], doc["kind"]) for _, doc in DOCS}
    assert kinds == {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"),
        ("serving.kserve.io/v1beta1", "InferenceService"),
        ("kubeflow.org/v1", "PyTorchJob"),
    }
    for api_version, kind in sorted(kinds):
        doc = next(d for _, d in DOCS if (d["apiVersion"], d["kind"]) == (api_version, kind))
        misspelt = copy.deepcopy(doc)
        misspelt["spec"]["replicaz"] = 2
        assert any("replicaz" in e for e in schema_errors(misspelt)), f"{kind}: an unknown field passed"
        mistyped = copy.deepcopy(doc)
        mistyped["metadata"]["name"] = 42
        assert schema_errors(mistyped), f"{kind}: a number for a name passed"
        if custom_schema_path(doc):
            assert custom_schema_path(doc).is_file(), describe(doc)


SERVING = serving_containers(DOCS)


@pytest.mark.parametrize(
    "where, container, pod_security, annotations, volumes", SERVING, ids=[s[0] for s in SERVING]
)
def test_serving_manifests_run_the_image_as_runtime_json_says(
    where, container, pod_security, annotations, volumes
):
    image, tag = container["image"].rsplit(":", 1)
    assert image.rsplit("/", 1)[-1] == RUNTIME.image and tag == VERSION, container["image"]
    assert container["args"] == RUNTIME.server_args()
    assert "command" not in container  # the image's ENTRYPOINT, the server as PID 1
    ports = container["ports"]
    assert ports[0]["containerPort"] == RUNTIME.http_port  # KServe: the first port is the service's
    grpc = [p for p in ports if "grpc" in p["name"] or "h2c" in p["name"]]  # KServe: h2c by name
    assert [p["containerPort"] for p in grpc] == [RUNTIME.grpc_port]
    assert 0 < container["lifecycle"]["preStop"]["sleep"]["seconds"] < 30  # within the grace period
    for probe, path in (("livenessProbe", RUNTIME.liveness), ("readinessProbe", RUNTIME.readiness)):
        assert container[probe]["httpGet"] == {"path": path, "port": RUNTIME.http_port}, probe
    security = {**pod_security, **container["securityContext"]}
    assert security["runAsNonRoot"] is True and security["runAsUser"] == RUNTIME.user
    assert security.get("runAsGroup", RUNTIME.user) == RUNTIME.user
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    prometheus = {k.split("/")[1]: v for k, v in annotations.items() if k.startswith("prometheus.")}
    assert prometheus["port"] == str(RUNTIME.http_port) and prometheus["path"] == RUNTIME.metrics
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    tmp = next(v for v in volumes if v["name"] == mounts["/tmp"]["name"])  # writable, for --workers
    assert "emptyDir" in tmp
    if ":Deployment:" in where:  # KServe mounts the storageUri there itself
        assert mounts[RUNTIME.repository]["readOnly"] is True


def test_inference_services_name_their_runtimes_and_serve_the_same_repository():
    (runtime,) = by_kind("ClusterServingRuntime")
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    services = {s["spec"]["predictor"]["model"]["runtime"]: s for s in by_kind("InferenceService")}
    assert set(services) == {runtime["metadata"]["name"], "kserve-tritonserver"}
    ours = services[runtime["metadata"]["name"]]["spec"]["predictor"]["model"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert (
        ours["modelFormat"]["name"] in formats
        and ours["protocolVersion"] in runtime["spec"]["protocolVersions"]
    )
    triton = services["kserve-tritonserver"]["spec"]["predictor"]["model"]
    assert triton["modelFormat"]["name"] == "triton"  # the repository is Triton's layout
    assert triton["storageUri"] == ours["storageUri"]
    for service in services.values():  # both ports are exposed only outside Knative
        assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_service_and_autoscaler_point_at_the_deployment():
    (deployment,) = by_kind("Deployment")
    (service,) = by_kind("Service")
    (autoscaler,) = by_kind("HorizontalPodAutoscaler")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container_ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    targets = {p["name"]: container_ports[p["targetPort"]] for p in service["spec"]["ports"]}
    assert targets == {"http": RUNTIME.http_port, "grpc": RUNTIME.grpc_port}
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["appProtocol"] == "kubernetes.io/h2c"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert autoscaler["spec"]["minReplicas"] >= 1


def test_pytorchjob_runs_the_readmes_training_command_and_the_readme_points_to_it():
    (job,) = by_kind("PyTorchJob")
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[0] == "torchrun" and command[command.index("-m") + 1 : command.index("-m") + 3] == [
        "pipeline",
        "train",
    ]
    readme = (ROOT / "README.md").read_text()
    assert "kind: PyTorchJob" not in readme  # moved to the manifest, not copied
    assert str((MANIFESTS / "pytorchjob.yaml").relative_to(ROOT)) in readme


def test_containerfile_defaults_agree_with_runtime_json():
    text = (ROOT / "deploy" / "Containerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    for name, value in RUNTIME.build_args().items():
        assert defaults[name] == value, name
    from deploy.healthcheck import READY
    from deploy.podman import DEFAULT_BASE

    assert defaults["BASE"] == DEFAULT_BASE
    assert RUNTIME.readiness == READY
