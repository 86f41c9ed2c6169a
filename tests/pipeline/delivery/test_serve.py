"""`mlops serve` end to end: the default model is the `challenger` alias of the local MLflow
registry; with no model registered it fails with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.engines import free_port
from tests.pipeline.serving.catalog import GOOD_ROW
from tests.pipeline.serving.live import Process


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


def test_serve_defaults_to_the_challenger(repo_copy: Path, model_dir: Path, monkeypatch) -> None:
    """The registry's challenger, with its lineage; predictions logged under .mlops/ by default."""
    monkeypatch.delenv("MLOPS_PREDICTION_LOG", raising=False)
    register_challenger(repo_copy, model_dir)
    server = Process(["-m", "pipeline.cli", "serve", "--port", "{port}"], repo_copy / "serve.log", cwd=repo_copy).wait_ready(60)
    try:
        version = httpx.get(f"{server.url}/version").json()
        assert version["model_version"] == "1" and version["model_uri"] == "models:/penguins-sex/1"
        assert version["data_hash"] == "d4t4"
        answer = httpx.post(f"{server.url}/predict", json={"rows": [GOOD_ROW]}).json()
        assert answer["predictions"] == ["male"]
    finally:
        code = server.stop(30)
    assert code == 0
    from pipeline.serving.predlog import export_rows

    logged = list(export_rows(str(repo_copy / ".mlops" / "predictions.db")))
    assert [(r["request_id"], r["model_version"], r["prediction"]) for r in logged] == [(answer["request_id"], "1", "male")]


def test_serve_without_a_registered_model_fails_clearly(repo_copy: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", "--port", str(free_port())], cwd=repo_copy,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "models:/penguins-sex@challenger" in result.stderr and "mlops run" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_cannot_warm_up_names_the_column_and_exits_1(tmp_path: Path, model_dir: Path) -> None:
    """As a model trained on an int column kept as text: its saved example rows hold "59.0"
    strings. The server once crashed at warm-up with a TypeError and a traceback."""
    import json
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    example = json.loads((broken / "input_example.json").read_text())
    position = example["columns"].index("body_mass_g")
    for row in example["data"]:
        row[position] = f"{row[position]:.1f}"
    (broken / "input_example.json").write_text(json.dumps(example))
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--config", str(repo / "mlops.yaml"), "serve",
                             "--model", str(broken), "--port", str(free_port())],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "the model cannot warm up: column 'body_mass_g': the warm-up value '3750.0' is str" in result.stderr
    assert "Traceback" not in result.stderr
