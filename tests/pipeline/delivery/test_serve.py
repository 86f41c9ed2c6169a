"""`mlops serve` end to end: the default model is the `challenger` alias of the local MLflow
registry; with no model registered it fails with one clear line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.engines import free_port, http_ok
from tests.pipeline.serving.catalog import GOOD_ROW


def register_challenger(repo: Path, model_dir: Path) -> None:
    """Log the fixture model to the repo copy's own sqlite registry as `promote` would."""
    code = f"""
import mlflow, mlflow.sklearn
mlflow.set_tracking_uri("sqlite:///{repo}/.mlops/mlflow.db")
model = mlflow.sklearn.load_model("{model_dir}")
with mlflow.start_run():
    info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops",
        skops_trusted_types=["numpy.dtype", "sklearn.tree._tree.Tree"], pip_requirements=["scikit-learn"],
        registered_model_name="penguins-sex")
mlflow.MlflowClient().set_registered_model_alias("penguins-sex", "challenger", info.registered_model_version)
mlflow.MlflowClient().set_model_version_tag("penguins-sex", info.registered_model_version, "data_hash", "d4t4")
"""
    (repo / ".mlops").mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_serve_defaults_to_the_challenger(repo_copy: Path, model_dir: Path) -> None:
    register_challenger(repo_copy, model_dir)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)], cwd=repo_copy,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/ready"):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        version = httpx.get(f"{url}/version").json()
        assert version["model_version"] == "1" and version["model_uri"] == "models:/penguins-sex/1"
        assert version["data_hash"] == "d4t4"
        assert httpx.post(f"{url}/predict", json={"rows": [GOOD_ROW]}).json()["predictions"] == ["male"]
    finally:
        proc.terminate()
    assert proc.wait(30) == 0


def test_serve_without_a_registered_model_fails_clearly(repo_copy: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", "--port", str(free_port())], cwd=repo_copy,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "models:/penguins-sex@challenger" in result.stderr and "mlops run" in result.stderr
    assert "Traceback" not in result.stderr
