"""The Grafana dashboard and its provisioning (infra/grafana/). No Grafana server can be had here
(not in Debian, PyPI or npm), so: the JSON against the dashboard model, every metric it names
against what the code exports, and the real proof: every panel query returns data from a real
Prometheus, run with infra/prometheus/prometheus.yml and alerts.yml, scraping two real `mlops
serve` processes (one logging, one whose log cannot be written) and a real Pushgateway that a
real `mlops monitor` pushed to."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import need_engine
from tests.engines import EngineUnavailable, start_prometheus, start_pushgateway
from tests.pipeline.monitor.conftest import live_rows
from tests.pipeline.serving.live import Process, send_labelled

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mlops-model.json"
PROMETHEUS = REPO / "infra" / "prometheus"
SCHEMA_VERSION = 41  # the classic dashboard model's schema version in Grafana 12
# What Grafana puts in for its variables when the test asks Prometheus itself.
RATE_INTERVAL, RANGE = "1m", "5m"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of the dashboard."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def exported_names() -> set[str]:
    """Every series name the serving app and the monitor export (from their real registries)."""
    from pipeline.monitor import prom
    from pipeline.serving.metrics import Metrics

    result = {"metrics": {"accuracy": 0.9}, "gates": [{"metric": "accuracy", "threshold": 0.8, "direction": "higher"}],
              "drift": {"features": {"x": {"psi": 0.1, "drifted": False}}}, "retrain_warranted": False,
              "labelled": 1, "rows": 1, "breaches": 0, "verdict": "healthy"}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = set()
    for registry in (Metrics().registry, prom.registry("p", result)):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def test_dashboard_follows_the_dashboard_model() -> None:
    board = dashboard()
    assert board["schemaVersion"] == SCHEMA_VERSION and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy"), panel["title"]
        assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24 and grid["h"] >= 1, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"], panel["title"]
            for name in re.findall(r"\$\{?([A-Za-z_]\w*)", target["expr"]):
                assert name in variables or name in ("__rate_interval", "__range"), f"{panel['title']}: ${name} undefined"


def test_dashboard_and_alerts_name_only_exported_metrics() -> None:
    """A renamed metric breaks the test, not silently the panel or the alert."""
    exported = exported_names()
    texts = [target["expr"] for _, target in queries(dashboard())]
    texts += [rule["expr"] for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]]
    named = {name for text in texts for name in re.findall(r"\b(?:serving|mlops_monitor)_\w+", text)}
    assert named and named <= exported, sorted(named - exported)
    # each part the issue asks for is on the dashboard
    board_names = {name for _, t in queries(dashboard()) for name in re.findall(r"\b(?:serving|mlops_monitor)_\w+", t["expr"])}
    for needed in ("serving_requests_total", "serving_request_duration_seconds_bucket", "serving_predictions_total",
                   "serving_prediction_score_bucket", "serving_prediction_log_dropped_total", "mlops_monitor_live_metric",
                   "mlops_monitor_drift_psi", "mlops_monitor_drifted", "mlops_monitor_retrain_warranted"):
        assert needed in board_names, needed


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http") and source["isDefault"] is True
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mlops.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


# --- every panel against a real Prometheus -------------------------------------------------------

def prometheus_config(servers: list[str], pushgateway: str) -> str:
    """infra/prometheus/prometheus.yml as shipped, its targets pointed at this run's processes."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / name) for name in config["rule_files"]]
    targets = {"model-server": servers, "pushgateway": [pushgateway]}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    return json.dumps(config)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{expr}: {exc.read().decode()}") from None
    assert body["status"] == "success", body
    return body["data"]["result"]


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def send_traffic(server: Process, frame: Any, labels: bool) -> None:
    """Every row of `frame` in 50-row requests (with its true labels through /feedback), and
    the caller mistakes a dashboard must show: a row that breaks the contract, an unknown route."""
    send_labelled(server.url, frame, "sex", labels)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/predict", json={"rows": [{"body_mass_g": "heavy"}]}).status_code == 422
        assert http.get("/no-such-route").status_code == 404


@pytest.mark.engine
def test_every_panel_query_returns_data_from_a_real_prometheus(model_dir: Path, repo_copy: Path) -> None:
    started = time.monotonic()
    try:
        gateway_proc, gateway = start_pushgateway()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
    procs: list[Any] = [gateway_proc]
    stop_traffic = threading.Event()
    try:
        serve = ["-m", "pipeline.cli", "serve", "--model", str(model_dir), "--port", "{port}"]
        log = repo_copy / "predictions.db"
        logging = Process(serve, repo_copy / "serve.log", env={"MLOPS_PREDICTION_LOG": str(log)}, cwd=repo_copy)
        procs.append(logging)
        logging.wait_ready(120)
        (repo_copy / "not-a-dir").write_text("")  # the second server's log cannot be created: rows dropped
        dropping = Process(serve, repo_copy / "serve-dropping.log",
                           env={"MLOPS_PREDICTION_LOG": str(repo_copy / "not-a-dir" / "predictions.db")}, cwd=repo_copy)
        procs.append(dropping)
        dropping.wait_ready(120)
        try:
            prom_proc, prometheus = start_prometheus([], config_text=prometheus_config(
                [f"127.0.0.1:{logging.port}", f"127.0.0.1:{dropping.port}"], gateway))
        except EngineUnavailable as exc:
            need_engine(False, str(exc))
        procs.append(prom_proc)

        # shifted, labelled traffic into the log; the monitor judges it and pushes its figures
        send_traffic(logging, live_rows(True, seed=7), labels=True)
        send_traffic(dropping, live_rows(False, seed=8).head(100), labels=False)
        config = repo_copy / "mlops.yaml"  # all traffic falls in one bucket of the hour: one breach decides
        config.write_text(config.read_text().replace("buckets: 3 ", "buckets: 1 ").replace("breaches: 2 ", "breaches: 1 "))
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "monitor", "--log", str(log), "--window", "1h"],
                              cwd=repo_copy, env={**os.environ, "MLOPS_PUSHGATEWAY": gateway},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr  # shifted traffic: retraining warranted
        project = yaml.safe_load(config.read_text())["project"]

        def keep_serving() -> None:  # rates need traffic inside the query's window
            good = live_rows(False, seed=9).head(20)
            while not stop_traffic.wait(0.5):
                for server in (logging, dropping):
                    send_traffic(server, good, labels=False)

        threading.Thread(target=keep_serving, daemon=True).start()

        pending = {(panel["title"], target["refId"]): target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                   .replace("$__range", RANGE).replace("$project", project) for panel, target in queries(dashboard())}
        deadline = time.monotonic() + 90
        while pending and time.monotonic() < deadline:
            for key, expr in list(pending.items()):
                if has_data(query(prometheus, expr)):
                    del pending[key]
            time.sleep(1)
        assert not pending, "panels without data:\n" + "\n".join(f"{t} [{r}]: {e}" for (t, r), e in pending.items())

        # the project variable lists the project; the alert rules load and see the real series
        assert project in {s["metric"]["project"] for s in query(prometheus, "mlops_monitor_last_run_timestamp_seconds")}
        groups = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10).read())["data"]["groups"]
        assert {g["name"] for g in groups} == {"model-server", "model-monitor"}
        assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups
        deadline = time.monotonic() + 30
        while True:
            alerts = {(s["metric"]["alertname"], s["metric"].get("project") or s["metric"].get("reason"))
                      for s in query(prometheus, "ALERTS")}
            wanted = {("ModelRetrainWarranted", project), ("ModelLiveMetricBelowGate", project),
                      ("ModelFeatureDrifted", project), ("PredictionLogDropping", "write_error")}
            if wanted <= alerts or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert wanted <= alerts, alerts
        print(f"\n{sum(1 for _ in queries(dashboard()))} panel queries answered; {time.monotonic() - started:.1f} s in all")
    finally:
        stop_traffic.set()
        for proc in reversed(procs):
            if isinstance(proc, Process):
                proc.stop()
            else:
                proc.terminate()
                proc.wait(10)
