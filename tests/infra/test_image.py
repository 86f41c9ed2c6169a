"""The serving image for real: build, push, pull back, run read-only as non-root with every
capability dropped, /ready then /predict, the bad-request catalog, Prometheus scraping it, and a
graceful SIGTERM."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.engines import free_port, http_ok, start_prometheus
from tests.infra.conftest import IMAGE
from tests.pipeline.serving.catalog import BAD_REQUESTS, GOOD_ROW

pytestmark = pytest.mark.engine


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_ready(url: str, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if http_ok(f"{url}/ready"):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{url}/ready not 200 within {timeout}s")


@pytest.fixture(scope="module")
def pulled(built_image: dict) -> str:
    """Drop every local tag, then pull the image back from the registry by digest."""
    digest = built_image["digest"]
    assert digest.startswith(f"127.0.0.1:5000/{IMAGE}@sha256:")
    for tag in built_image["tags"]:
        docker("rmi", tag, check=False)
    docker("pull", digest)
    return digest


@pytest.fixture(scope="module")
def container(pulled: str) -> Iterator[dict[str, Any]]:
    port = free_port()
    name = f"mlops-test-serving-{port}"
    # A fresh volume at /srv/state (as the swarm stack mounts one): the prediction log's file.
    docker("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "-v", f"{name}-state:/srv/state",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-e", f"MLOPS_IMAGE_DIGEST={pulled.partition('@')[2]}",
           "-p", f"127.0.0.1:{port}:8080", pulled)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_after = wait_ready(url)
        yield {"name": name, "url": url, "port": port, "ready_after": ready_after, "digest": pulled}
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", f"{name}-state", check=False)


def test_labels_carry_the_lineage(pulled: str, built_image: dict) -> None:
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{pulled}"],
                                     capture_output=True, text=True, check=True).stdout)
    labels = info["Labels"]
    assert labels["org.opencontainers.image.revision"] == built_image["git_sha"]
    assert labels["io.mlops.model.version"] == "1"
    assert labels["org.opencontainers.image.base.name"] == built_image["base_image"]
    assert set(info["RepoTags"]) >= {t.rpartition(":")[2] for t in built_image["tags"]}


def test_runs_read_only_non_root_without_capabilities(container: dict) -> None:
    inspect = json.loads(docker("inspect", container["name"]))[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert inspect["HostConfig"]["CapDrop"] == ["ALL"]
    assert docker("exec", container["name"], "id", "-u") == "10001"
    assert subprocess.run(["docker", "exec", container["name"], "touch", "/srv/x"], capture_output=True).returncode != 0


def test_ready_then_predict_known_answers(container: dict, config) -> None:
    cases = config.evaluate.behaviour.minimum
    rows = [{k: v for k, v in case.row.items() if k in config.feature_columns} for case in cases]
    answer = httpx.post(f"{container['url']}/predict", json={"rows": rows}).json()
    assert answer["predictions"] == [case.expect for case in cases]
    version = httpx.get(f"{container['url']}/version").json()
    assert version["model_version"] == "1"
    assert version["image_digest"] == container["digest"].partition("@")[2]


def test_logs_predictions_and_takes_feedback_in_srv_state(container: dict) -> None:
    """The read-only image writes its prediction log to /srv/state (owned by its user) and takes
    labels for it; nothing is dropped."""
    answer = httpx.post(f"{container['url']}/predict", json={"rows": [{**GOOD_ROW, "sample_id": "IMG-1"}]}).json()
    assert answer["ids"] == ["IMG-1"]
    feedback = httpx.post(f"{container['url']}/feedback", json={"request_id": answer["request_id"], "labels": ["male"]})
    assert feedback.status_code == 200, feedback.text
    metrics = httpx.get(f"{container['url']}/metrics").text
    assert "serving_prediction_log_dropped_total{" not in metrics, metrics
    assert docker("exec", container["name"], "ls", "/srv/state/predictions.db") == "/srv/state/predictions.db"


def test_serves_through_onnxruntime_with_no_scikit_learn_inside(container: dict) -> None:
    """The build converted the model and verified the graph: both workers serve it with
    onnxruntime, and the image holds neither scikit-learn nor SciPy (nor pandas, skops)."""
    assert docker("exec", container["name"], "ls", "/srv/model/model.onnx", "/srv/model/model.onnx.json")
    logs = subprocess.run(["docker", "logs", container["name"]], capture_output=True, text=True).stderr
    assert logs.count("model served by onnxruntime") == 2, logs[-2000:]
    names = ('sklearn', 'scipy', 'pandas', 'skops', 'onnxruntime')
    probe = f"import importlib.util as u; print([n for n in {names!r} if u.find_spec(n)])"
    assert docker("exec", container["name"], "python", "-c", probe) == "['onnxruntime']"


def test_answers_like_the_model_in_process(container: dict, model_dir, contract) -> None:
    """Generated rows (missing values included): the labels scikit-learn gives, probabilities
    within the build's tolerance."""
    import numpy as np

    from pipeline.delivery import onnx
    from pipeline.serving import predictor

    rows = onnx.generated_rows(contract, 500, seed=11)
    answer = httpx.post(f"{container['url']}/predict", json={"rows": rows}, timeout=30).json()
    expected = predictor.load_sklearn(model_dir, contract).predict_rows(rows)
    assert answer["predictions"] == expected.predictions
    assert np.allclose(answer["probabilities"], expected.probabilities, rtol=onnx.RTOL, atol=onnx.ATOL)


def test_healthcheck_reports_healthy(container: dict) -> None:
    deadline = time.monotonic() + 30
    while (state := docker("inspect", "--format", "{{.State.Health.Status}}", container["name"])) != "healthy":
        assert time.monotonic() < deadline, f"health is {state}"
        time.sleep(0.5)


@pytest.mark.parametrize(("name", "body", "content_type", "status", "field"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_in_the_container(container: dict, name, body, content_type, status, field) -> None:
    response = httpx.post(f"{container['url']}/predict", content=body, headers={"content-type": content_type}, timeout=30)
    assert response.status_code == status, response.text[:300]


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


def test_prometheus_scrapes_the_container(container: dict) -> None:
    for _ in range(5):
        httpx.post(f"{container['url']}/predict", json={"rows": [GOOD_ROW] * 10})
    proc, prometheus = start_prometheus([f"127.0.0.1:{container['port']}"])
    try:
        deadline = time.monotonic() + 30
        while True:
            up = _query(prometheus, 'up{job="serving"}')
            rows = _query(prometheus, "serving_rows_total")
            if up and up[0]["value"][1] == "1" and rows:
                break
            assert time.monotonic() < deadline, f"up={up} rows={rows}"
            time.sleep(0.5)
        assert float(rows[0]["value"][1]) >= 50
        info = _query(prometheus, "serving_model_info")
        assert info and info[0]["metric"]["model_version"] == "1"
        assert _query(prometheus, 'serving_feature_category_total{feature="species",value="Gentoo"}')
        assert _query(prometheus, 'serving_request_duration_seconds_count{route="/predict"}')
    finally:
        proc.terminate()
        proc.wait(10)


def test_sigterm_drains_and_exits_zero(pulled: str) -> None:
    """In-flight requests finish after SIGTERM; the process then exits 0."""
    port = free_port()
    name = f"mlops-test-drain-{port}"
    docker("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "-e", "MLOPS_DRAIN_SECONDS=1", "-p", f"127.0.0.1:{port}:8080", pulled)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        with httpx.Client(timeout=30) as client:
            docker("kill", "--signal", "TERM", name)
            time.sleep(0.2)
            during = client.get(f"{url}/ready")  # still listening while draining, but not ready
            batch = client.post(f"{url}/predict", json={"rows": [GOOD_ROW] * 1000})
        assert during.status_code == 503
        assert batch.status_code == 200
        assert docker("wait", name) == "0"
    finally:
        docker("rm", "-f", name, check=False)
