"""The loop, end to end: `mlops serve` logs predictions, /feedback joins ground truth, and
`mlops monitor --open-pr` on that log keeps one retraining pull request on a LOCAL STAND-IN of
the GitHub REST API (tests/pipeline/monitor/github_standin.py): shifted traffic opens it, a
second run updates it, healthy traffic closes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.pipeline.monitor.conftest import live_rows
from tests.pipeline.monitor.github_standin import Repo, StandIn
from tests.pipeline.serving.live import Process, send_labelled


def _traffic(model_dir: Path, folder: Path, log: Path, frame: pd.DataFrame) -> None:
    """Serve, send every row (50 per request) and its true label, stop (the log is flushed)."""
    server = Process(["-m", "pipeline.cli", "serve", "--model", str(model_dir), "--port", "{port}"],
                     folder / f"{log.stem}.serve.log", env={"MLOPS_PREDICTION_LOG": str(log)}, cwd=folder).wait_ready(120)
    try:
        send_labelled(server.url, frame, "sex")
    finally:
        assert server.stop(60) == 0, server.text()


def _monitor(folder: Path, log: Path, standin: StandIn) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "monitor", "--open-pr", "--log", str(log), "--window", "1h"],
                          cwd=folder, env={**os.environ, **standin.env},
                          capture_output=True, text=True, timeout=300)
    result = json.loads((folder / "outputs" / "monitor.json").read_text())
    return done.returncode, result, done.stderr


def test_shifted_traffic_opens_one_pr_a_second_run_updates_it_healthy_traffic_closes_it(model_dir: Path,
                                                                                        repo_copy: Path) -> None:
    config = repo_copy / "mlops.yaml"  # all traffic falls in one bucket of the hour: one breach decides
    config.write_text(config.read_text().replace("buckets: 3 ", "buckets: 1 ").replace("breaches: 2 ", "breaches: 1 "))
    standin = StandIn(Repo())
    try:
        shifted = repo_copy / "shifted.db"
        _traffic(model_dir, repo_copy, shifted, live_rows(True, seed=7))
        code, result, err = _monitor(repo_copy, shifted, standin)
        assert code == 1, err
        assert result["rows"] == 333 and result["labelled"] == 333
        assert {"body_mass_g", "flipper_length_mm"} <= set(result["drift"]["drifted"])
        [pr] = standin.open_pulls()
        assert result["pull_request"] == {"action": "opened", "number": pr["number"], "url": pr["html_url"]}
        train = standin.repo.files("mlops/retrain/penguins-sex")["data/monitor/train.csv"]
        assert len(train.splitlines()) == 1 + 333 + 333  # header, the training rows, the labelled live rows

        code, result, err = _monitor(repo_copy, shifted, standin)
        assert code == 1, err
        assert result["pull_request"]["action"] == "updated" and len(standin.repo.pulls) == 1

        healthy = repo_copy / "healthy.db"
        _traffic(model_dir, repo_copy, healthy, live_rows(False, seed=8))
        code, result, err = _monitor(repo_copy, healthy, standin)
        assert code == 0, err
        assert result["verdict"] == "healthy" and result["pull_request"]["action"] == "closed"
        assert standin.open_pulls() == [] and len(standin.repo.pulls) == 1
    finally:
        standin.close()
