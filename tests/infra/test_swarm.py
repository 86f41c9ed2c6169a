"""Swarm rollout and automatic rollback under load, through `mlops deploy` (the real command).

v1 is deployed; v2 rolls out while a load generator sends requests (0 may fail); a broken v3
(its model cannot load, so it never becomes healthy) must make the deploy exit non-zero, leave
the service on v2, and still fail no request. Each deploy names its model's digest in the model
registry: `staging` follows the deploys that passed and stays on v2's after the broken one.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline import registry
from tests.conftest import need_engine
from tests.engines import RUN_TAG, EngineUnavailable, ensure_swarm, free_port
from tests.infra.conftest import IMAGE, build_image, mlops
from tests.infra.edge_proxy import EDGE_NETWORK, EdgeProxy, ensure_edge_network
from tests.pipeline.serving.catalog import GOOD_ROW
from tests.pipeline.test_registry import tiny_model

pytestmark = pytest.mark.engine
STACK = f"mlops-test-{RUN_TAG}"  # unique per test run


class LoadGenerator:
    """Threads sending single-row /predict requests over keep-alive connections; counts failures."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.threads = url, threads
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.url}/predict", json={"rows": [GOOD_ROW]})
                    failure = None if response.status_code == 200 else f"{response.status_code}: {response.text[:100]}"
                    version = response.json().get("model_version") if failure is None else None
                except httpx.HTTPError as exc:
                    failure, version = f"{type(exc).__name__}: {exc}", None
                with self._lock:
                    if failure:
                        self.failures.append(failure)
                    else:
                        self.ok += 1
                        self.versions.add(str(version))
                time.sleep(0.01)

    def __enter__(self) -> LoadGenerator:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)


@pytest.fixture(scope="module")
def swarm(engines: str) -> str:
    try:
        ensure_swarm()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
    return engines


@pytest.fixture(scope="module")
def images(swarm: str, built_image: dict, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """v1 (session build), v2 (a rebuild for model version 2) and a broken v3, all pushed."""
    v2 = build_image(model_dir, swarm, "2", tmp_path_factory.mktemp("build-v2"))
    context = tmp_path_factory.mktemp("broken")
    (context / "Dockerfile").write_text(f"FROM {v2['digest']}\nENV MLOPS_MODEL_DIR=/srv/missing-model\n")
    broken = f"{swarm}/{IMAGE}:broken"
    subprocess.run(["docker", "build", "-q", "-t", broken, str(context)], check=True, capture_output=True)
    subprocess.run(["docker", "push", broken], check=True, capture_output=True)
    digests = json.loads(subprocess.run(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", broken],
                                        check=True, capture_output=True, text=True).stdout)
    return {"v1": built_image["digest"], "v2": v2["digest"], "v3": digests[0]}


@pytest.fixture(scope="module")
def stack(swarm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The stack's tasks also join a host-routable network, fronted by the edge proxy stand-in."""
    subprocess.run(["docker", "stack", "rm", STACK], capture_output=True)
    network = ensure_edge_network()
    override = tmp_path_factory.mktemp("stack") / "edge.yml"
    override.write_text("version: '3.8'\nservices:\n  serving:\n    networks: [default, edge]\n"
                        f"networks:\n  edge:\n    external: true\n    name: {network}\n")
    port = free_port()
    with EdgeProxy(f"{STACK}_serving", port, network=EDGE_NETWORK):
        yield {"port": port, "url": f"http://127.0.0.1:{port}", "override": str(override)}
    subprocess.run(["docker", "stack", "rm", STACK], capture_output=True)
    # The stack's prediction-log volume outlives `stack rm`; it can go once its containers are gone.
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "volume", "rm", f"{STACK}_predictions"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline or "no such volume" in subprocess.run(
                ["docker", "volume", "inspect", f"{STACK}_predictions"], capture_output=True, text=True).stderr.lower():
            break
        time.sleep(1)


@pytest.fixture(scope="module")
def models(swarm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three model versions in a model registry of this run's own (the images' models stand in)."""
    repo = registry.parse(f"{swarm}/mlops-test-{RUN_TAG}/swarm-model")
    client = registry.connect(repo)
    folder = tmp_path_factory.mktemp("models")
    pushed = {name: registry.push(client, tiny_model(folder / name / "model", name), {}).digest for name in ("v1", "v2", "v3")}
    return {"repository": str(repo), **pushed}


def deploy(image: str, stack: dict, models: dict[str, str], version: str) -> subprocess.CompletedProcess[str]:
    return mlops("deploy", "--target", "swarm", "--env", "staging", "--image", image, "--name", STACK,
                 "--port", str(free_port()), "--url", stack["url"], "--compose-file", stack["override"], "--timeout", "240",
                 "--model-digest", models[version], env={registry.ENV: models["repository"]})


def staging(models: dict[str, str]) -> str | None:
    return registry.resolve(registry.connect(registry.parse(models["repository"])), registry.STAGING)


def service_image() -> str:
    return subprocess.run(["docker", "service", "inspect", f"{STACK}_serving", "--format",
                           "{{.Spec.TaskTemplate.ContainerSpec.Image}}"], capture_output=True, text=True).stdout.strip()


def test_rollout_then_automatic_rollback_under_load(images: dict[str, str], stack: dict, models: dict[str, str]) -> None:
    first = deploy(images["v1"], stack, models, "v1")
    assert first.returncode == 0, first.stderr
    assert staging(models) == models["v1"]
    assert httpx.get(f"{stack['url']}/version").json()["model_version"] == "1"

    with LoadGenerator(stack["url"]) as load:
        second = deploy(images["v2"], stack, models, "v2")
        time.sleep(2)
    print(f"v1 -> v2: {load.ok} ok, {len(load.failures)} failed, versions seen {sorted(load.versions)}")
    assert second.returncode == 0, second.stderr
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert load.ok > 50 and {"1", "2"} <= load.versions
    assert httpx.get(f"{stack['url']}/version").json()["model_version"] == "2"
    assert staging(models) == models["v2"]

    with LoadGenerator(stack["url"]) as load:
        third = deploy(images["v3"], stack, models, "v3")
        time.sleep(2)
    print(f"v2 -> broken v3: {load.ok} ok, {len(load.failures)} failed; deploy said: {third.stderr.strip()}")
    assert third.returncode == 1, third.stdout + third.stderr
    assert "rollback_completed" in third.stderr and images["v3"] in third.stderr
    assert service_image().endswith(images["v2"].partition("@")[2])
    assert httpx.get(f"{stack['url']}/version").json()["model_version"] == "2"
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert load.versions == {"2"}
    assert staging(models) == models["v2"]  # the failed deploy left `staging` where it was
