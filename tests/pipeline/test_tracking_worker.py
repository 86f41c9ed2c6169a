"""`mlops run` keeps MLflow in its own process: the run's process never imports MLflow, and a
failed MLflow write still fails its step with one clear line and records nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from pipeline.cli import main
code = main(["run"])
print(f"exit={code} mlflow_imported={'mlflow' in sys.modules}")
"""


def test_a_cold_run_leaves_mlflow_to_the_tracking_process(repo_copy: Path):
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=repo_copy, capture_output=True, text=True, timeout=600)
    assert "exit=0 mlflow_imported=False" in out.stdout, out.stderr[-2000:]
    train = json.loads((repo_copy / "outputs" / "train.json").read_text())
    assert train["run_id"] and (repo_copy / "outputs" / "model" / "MLmodel").is_file()
    assert "version 1 is `challenger`" in out.stderr
    plots = json.loads((repo_copy / "outputs" / "summary.json").read_text())["plots"]  # matplotlib came from charts.preload
    assert "confusion_matrix.png" in plots and all((repo_copy / "outputs" / "plots" / p).stat().st_size > 1000 for p in plots)
    assert "Warning" not in out.stderr, out.stderr  # e.g. scikit-learn's loky warning from the daemon process


def test_a_failed_mlflow_write_fails_train_and_records_nothing(repo_copy: Path, tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the store's folder would be\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/mlflow.db"}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run"], cwd=repo_copy, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "error: MLflow: log_training failed:" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (repo_copy / "outputs" / "train.json").exists()
    cache = json.loads((repo_copy / ".mlops" / "cache.json").read_text())
    assert set(cache["steps"]) == {"validate"}


def test_idle_work_runs_once_while_the_first_answer_is_awaited(repo_copy: Path):
    from pipeline.config import load_config
    from pipeline.tracking_worker import TrackingWorker

    config = load_config(repo_copy / "mlops.yaml")
    worker = TrackingWorker(config)
    done: list[str] = []
    worker.when_idle(lambda: done.append("matplotlib"))
    try:
        assert worker.call("alias_version", (config, "champion"), {}) is None  # no registered model yet
        assert done == ["matplotlib"]
        assert worker.call("alias_version", (config, "challenger"), {}) is None
        assert done == ["matplotlib"]
    finally:
        worker.close()
