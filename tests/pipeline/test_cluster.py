"""`train.backend: ray`: the search's trials run as tasks on a real Ray cluster (a head and a worker
node started on loopback for this run) and give what the local run gives; the faults (cluster
unreachable, a worker node killed mid-search, a trial raising) end in one line naming the
address or the trial, exit 1, nothing registered and nothing left running on the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_engine
from tests.engines import EngineUnavailable, RayCluster, free_port
from tests.pipeline.generated import classification_config, classification_frame, write_project

pytestmark = pytest.mark.engine

SEARCH = {"method": "grid", "space": {"max_depth": [2, 4, 8], "min_samples_leaf": [1, 4]}, "folds": 3}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        need_engine(False, "ray is not installed (pip install -e '.[ray]')")
    try:
        started = RayCluster(head_cpus=1, worker_cpus=1, workers=1)
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        raise
    yield started
    started.stop()


def project(folder: Path, search: dict[str, Any] = SEARCH, backend: str = "local") -> Path:
    def mutate(raw: dict[str, Any]) -> None:
        raw["train"]["search"] = search
        raw["train"]["backend"] = backend

    return write_project(folder, classification_frame(rows=600), classification_config(), mutate).parent


def mlops(folder: Path, *args: str, address: str | None = None, **popen: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if address:
        env["RAY_ADDRESS"] = address
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)


def trained(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / "outputs" / "train.json").read_text())
    return result


def idle(cluster: RayCluster) -> bool:
    """Every CPU of the cluster free again: no task or actor of ours left behind."""
    probe = ("import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
             "for _ in range(40):\n"
             "    if ray.available_resources().get('CPU') == ray.cluster_resources().get('CPU'): print('idle'); break\n"
             "    time.sleep(0.5)\n")
    done = subprocess.run([sys.executable, "-c", probe, cluster.address], capture_output=True, text=True, timeout=120)
    return done.stdout.strip().endswith("idle")


def test_the_search_on_ray_gives_the_local_result(cluster: RayCluster, tmp_path: Path) -> None:
    """Through the head's GCS address and through Ray Client (ray://, a driver outside the cluster
    such as a hosted CI runner): the same trials, best params and metrics as on this machine."""
    local = project(tmp_path / "local")
    done = mlops(local, "run")
    assert done.returncode == 0, done.stderr
    on_local = trained(local)
    assert on_local["backend"] == "local"
    for name, address in (("gcs", cluster.address), ("client", cluster.client_address)):
        remote = project(tmp_path / name, backend="ray")
        done = mlops(remote, "run", address=address)
        assert done.returncode == 0, done.stderr
        on_ray = trained(remote)
        assert on_ray["backend"] == f"ray ({address})"
        assert on_ray["search"]["best_params"] == on_local["search"]["best_params"]
        assert [(t["params"], t["mean"], t["std"], t["rank"]) for t in on_ray["search"]["trials"]] == \
               [(t["params"], t["mean"], t["std"], t["rank"]) for t in on_local["search"]["trials"]]
        # the refit forest sums its trees in another order
        assert on_ray["metrics"] == pytest.approx(on_local["metrics"], rel=1e-12)
        assert "Hyperparameter search (grid): 6 trials" in (remote / "outputs" / "report.md").read_text()
        assert idle(cluster), name


SHARED = """
import sys, joblib, pickle, numpy as np, pandas as pd
from pipeline.cluster import backend
frame = pd.DataFrame({"x": np.arange(200_000, dtype=float), "c": ["a", "b"] * 100_000})
def rows(part):
    return type(part).__name__, len(part), float(part["x"].sum())
with backend(sys.argv[1]) as share:
    shared = share(frame)
    print(len(pickle.dumps(frame)), len(pickle.dumps(shared)))
    print(joblib.Parallel(n_jobs=-1)(joblib.delayed(rows)(shared) for _ in range(4)))
    print(float(shared["x"].sum()), len(shared[["x"]]))
"""


def test_the_trials_get_the_frame_through_the_object_store(cluster: RayCluster) -> None:
    """share(): the frame goes into Ray's object store once and a trial's task carries only its
    reference (a few hundred bytes instead of the frame), over GCS and Ray Client alike; the
    worker sees the plain frame, the driver keeps using it as one."""
    for address in (cluster.address, cluster.client_address):
        done = subprocess.run([sys.executable, "-c", SHARED, address], capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
        assert done.returncode == 0, done.stderr
        sizes, trials, driver = done.stdout.strip().splitlines()[-3:]
        whole, reference = map(int, sizes.split())
        assert whole > 1_000_000 and reference < 2_000, sizes
        total = float(sum(range(200_000)))
        assert trials == str([("DataFrame", 200_000, total)] * 4)
        assert driver == f"{total} 200000"
    assert idle(cluster)


def test_ray_address_alone_selects_ray_and_backend_ray_needs_one(cluster: RayCluster, tmp_path: Path) -> None:
    folder = project(tmp_path / "p", search={"space": {"max_depth": [2, 4]}, "folds": 2})
    assert mlops(folder, "validate").returncode == 0
    done = mlops(folder, "train", address=cluster.address)
    assert done.returncode == 0, done.stderr
    assert trained(folder)["backend"] == f"ray ({cluster.address})"
    folder = project(tmp_path / "q", search={"space": {"max_depth": [2, 4]}, "folds": 2}, backend="ray")
    assert mlops(folder, "validate").returncode == 0
    done = mlops(folder, "train")
    assert done.returncode == 1
    assert "train.backend: ray needs the cluster's address in RAY_ADDRESS" in done.stderr


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_cluster_is_named(tmp_path: Path, scheme: str) -> None:
    folder = project(tmp_path / "p", backend="ray")
    address = f"{scheme}127.0.0.1:{free_port()}"  # nothing listens there (for ray://: the client port)
    started = time.monotonic()
    done = mlops(folder, "run", address=address)
    assert done.returncode == 1
    assert f"the Ray cluster at {address} (RAY_ADDRESS) is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    assert not (folder / "outputs" / "train.json").exists()


class FlakyInit:
    """`ray.init` as Ray Client's proxy answers when a session's server dies at start (Ray's own
    message; the race behind it cannot be provoked on demand): fails `failures` times, then connects."""

    MESSAGE = ("Initialization failure from server:\nTraceback (most recent call last):\nRuntimeError: Starting Ray "
               "client server failed. See ray_client_server_23000.err for detailed logs.")

    def __init__(self, failures: int, error: type[Exception] = ConnectionAbortedError, message: str = MESSAGE) -> None:
        self.failures, self.error, self.message = failures, error, message
        self.calls = self.shutdowns = 0

    def __call__(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(self.message)

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_client_server_that_dies_at_start_is_retried() -> None:
    from pipeline.cluster import connect

    init = FlakyInit(failures=2)
    connect(init, init.shutdown, "ray://127.0.0.1:10001", retries=3)
    assert (init.calls, init.shutdowns) == (3, 2)


def test_connect_gives_up_after_the_retries_and_never_retries_other_errors() -> None:
    from pipeline.cluster import connect
    from pipeline.errors import PipelineError

    init = FlakyInit(failures=5)
    with pytest.raises(PipelineError, match=r"(?s)cannot connect to the Ray cluster at ray://127.0.0.1:10001 .*"
                                            r"Starting Ray client server failed"):
        connect(init, init.shutdown, "ray://127.0.0.1:10001", retries=3)
    assert init.calls == 3
    other = FlakyInit(failures=1, error=ConnectionError, message="version mismatch: client 2.60.0, server 2.9.0")
    with pytest.raises(PipelineError, match="version mismatch"):
        connect(other, other.shutdown, "ray://127.0.0.1:10001", retries=3)
    assert other.calls == 1


def test_a_trial_raising_on_ray_names_its_params(cluster: RayCluster, tmp_path: Path) -> None:
    folder = project(tmp_path / "p", search={"space": {"max_features": [2, 0]}, "folds": 2}, backend="ray")
    done = mlops(folder, "run", address=cluster.address)
    assert done.returncode == 1
    assert "train.search: trial 2 failed with params {'max_features': 0}" in done.stderr
    assert not (folder / "outputs" / "train.json").exists()
    assert idle(cluster)


def _busy(node_group: int) -> bool:
    """Whether a Ray worker process of this node (its process group) runs a task or actor: Ray
    titles it `ray::<name>` then, and `ray::IDLE` otherwise."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != node_group:
                continue
            title = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::") and not title.startswith(b"ray::IDLE"):
            return True
    return False


def test_a_worker_node_killed_mid_search_is_reported(tmp_path: Path) -> None:
    """Its own cluster (the node dies for good): the search is started, the worker node SIGKILLed
    while its trials run, and the train step ends in one line naming the cluster, exit 1."""
    try:
        doomed = RayCluster(head_cpus=0, worker_cpus=1, workers=1)  # nowhere else to retry: the failure is certain
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        raise
    try:
        slow = {"method": "random", "space": {"max_depth": {"low": 4, "high": 16, "integer": True}},
                "max_trials": 200, "folds": 3}  # ~50 s: still running when the node is killed
        folder = project(tmp_path / "p", search=slow, backend="ray")
        assert mlops(folder, "validate").returncode == 0
        env = {**os.environ, "RAY_ADDRESS": doomed.address}
        train = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train"], cwd=folder, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # kill the node only once work of ours runs on it (a fixed sleep lost that race under load)
        deadline = time.monotonic() + 120
        while not _busy(doomed.workers[0].pid) and train.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert train.poll() is None, train.communicate()
        assert _busy(doomed.workers[0].pid), "no trial ever ran on the worker node"
        doomed.kill_worker()
        _, stderr = train.communicate(timeout=300)
        assert train.returncode == 1, stderr
        assert f"train: the Ray cluster at {doomed.address} failed mid-search" in stderr
        assert "Traceback" not in stderr
        assert not (folder / "outputs" / "train.json").exists()
        assert idle(doomed)  # the surviving head holds nothing of the failed run
    finally:
        doomed.stop()
