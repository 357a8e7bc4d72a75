"""The Kubernetes manifests and the compose file, validated offline.

Each kustomize overlay (``local``, ``district``) is rendered with ``kubectl kustomize`` and every object is
validated against the Kubernetes OpenAPI schemas with ``kubernetes-validate`` (strict: unknown fields fail).
Then the rules an operator relies on: every process of the pipeline runs, with probes, resources, a PDB, the
non-root read-only security context and its ops endpoint on the pod's address; no secret sits in a ConfigMap;
the worker's memory follows ``make bench``'s figure. The compose file is checked against the Compose
Specification with ``check-jsonschema``.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from csync.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
PROCESSES = {
    ("csync", "worker"),
    ("csync", "sink", "clickhouse"),
    ("csync", "sink", "redis"),
    ("csync", "collector"),
    ("csync", "lag", "serve"),
    ("csync", "teacher-api"),
    ("csync", "analyst-api"),
}
SETUP = {("csync", "topics", "create", "--alter"), ("csync", "clickhouse", "migrate")}
OPS_PORTS = {"csync-worker": 6066, "csync-sink-clickhouse": 9465, "csync-sink-redis": 9466,
             "csync-collector": 9469, "csync-lag": 9468}  # fmt: skip
API_PORTS = {"csync-teacher-api": 8090, "csync-analyst-api": 8091}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render kustomize overlays (.ci/run installs it)"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=["local", "district"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")
            and d["metadata"]["name"].startswith("csync-")]  # fmt: skip


def test_every_object_validates_against_the_kubernetes_schemas(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    assert len(docs) >= 20
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_rejected() -> None:
    # The validator really checks: a misspelt field and a wrong type both fail.
    worker = next(d for d in render("local") if d["metadata"]["name"] == "csync-worker")
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_every_process_runs_hardened_with_probes_resources_and_a_pdb(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    commands = set()
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod.get("initContainers", []) + pod["containers"]:
            commands.add(tuple(c["command"]))
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
            assert c["envFrom"] == [{"configMapRef": {"name": "csync-settings"}}]
        if w["kind"] == "Job":
            continue
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert any(set(p["spec"]["selector"]["matchLabels"].items()) <= set(labels.items())
                   for p in pdbs), f"no PodDisruptionBudget for {w['metadata']['name']}"  # fmt: skip
        (c,) = pod["containers"]
        assert c["readinessProbe"] and c["livenessProbe"]
        name = w["metadata"]["name"]
        if name in OPS_PORTS:
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports["metrics"] == OPS_PORTS[name]
        elif name in API_PORTS:  # the people-facing APIs probe their own http port
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert commands == PROCESSES | SETUP


def test_secrets_are_secrets_and_every_ops_server_binds_the_pod_address(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    (settings,) = [d for d in docs if d["kind"] == "ConfigMap"]
    for key, value in settings["data"].items():
        assert not re.search(r"PASSWORD|TOKEN|SECRET", key) or key.endswith("_FILE"), key
        assert not re.search(r"://[^/@]*:[^/@]*@", value), f"credentials in ConfigMap {key}"
    # USAGE_READ_HOST stays on loopback: `csync usage` reads it inside the sink's pod (kubectl exec).
    hosts = [f.name.upper() for f in dataclasses.fields(Settings)
             if f.name.endswith("_host") and f.name != "usage_read_host"]  # fmt: skip
    assert hosts and all(settings["data"].get(h) == "0.0.0.0" for h in hosts), hosts  # noqa: S104
    # Every Secret a pod needs is referenced by name; the local overlay generates all of them.
    referenced = set()
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
        for v in pod.get("volumes", []):
            for src in v.get("projected", {}).get("sources", []):
                if "secret" in src and not src["secret"].get("optional"):
                    referenced.add(src["secret"]["name"])
    assert {"csync-kafka", "csync-redis", "csync-clickhouse", "csync-collector-tokens",
            "csync-teacher-tokens"} <= referenced  # fmt: skip
    if name == "local":
        generated = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
        assert referenced <= generated
    else:
        assert not [d for d in docs if d["kind"] == "Secret"], "district secrets live outside git"
        data = settings["data"]
        assert data["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert data["REDIS_URL"].startswith("rediss://")
        Settings.from_env(data)  # the teacher and analyst APIs get no Kafka credentials
        Settings.from_env({**data, "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": "/f"})


def test_worker_memory_follows_the_benchmark_figure() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    found = re.search(r"worker memory, (?:whole )?RSS per 10k students[^|]*\|\s*([\d.]+) MB", text)
    assert found, "docs/benchmarks.md lost the worker memory figure"
    per_10k = float(found.group(1))
    worker = next(d for d in render("district") if d["metadata"]["name"] == "csync-worker")
    base = next(yaml.safe_load_all((K8S / "base" / "worker.yaml").read_text()))
    (c,) = worker["spec"]["template"]["spec"]["containers"]
    request_mb = int(c["resources"]["requests"]["memory"].removesuffix("Mi")) * 1.048576
    # The base sizes for 100k students on its replicas, with room for batch and snapshot buffers.
    needed = per_10k * 10 / base["spec"]["replicas"]
    assert request_mb >= 1.5 * needed, (request_mb, needed)


def test_compose_file_follows_the_compose_spec() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(ROOT / "deploy" / "docker-compose.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    commands = {" ".join(s.get("command", [])) for s in compose["services"].values()}
    for process in PROCESSES:
        assert any(" ".join(process[1:]) in c for c in commands), process


def test_the_upgrade_order_selects_setup_then_sinks() -> None:
    # docs/deploy.md applies `-l app in (csync-settings,csync-setup)`, then the sinks, then the rest.
    docs = render("district")

    def selected(apps: set[str]) -> set[str]:
        return {f"{d['kind']}/{d['metadata']['name']}" for d in docs
                if d["metadata"].get("labels", {}).get("app") in apps}  # fmt: skip

    assert selected({"csync-settings", "csync-setup"}) == {
        "ConfigMap/csync-settings",
        "Job/csync-setup",
    }
    sinks = selected({"csync-sink-clickhouse", "csync-sink-redis"})
    assert {"Deployment/csync-sink-clickhouse", "Deployment/csync-sink-redis"} <= sinks
    assert all(not name.startswith(("Deployment/csync-worker", "Job/")) for name in sinks)
