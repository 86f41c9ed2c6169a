"""A lightgbm model (an estimator declared in model/ only, plus its optional extra) served from
the image `mlops build` makes: trained with `mlops run` on generated data, built and pushed to
the local registry, started read-only; `/predict` answers what the model answers in-process.
LightGBM converts to ONNX through onnxmltools' converter (registered by model/estimator.py), so
the image serves it with onnxruntime and carries neither LightGBM nor scikit-learn."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.engines import free_port
from tests.infra.conftest import mlops
from tests.infra.test_image import docker, wait_ready
from tests.pipeline.test_estimator_plugin import make_rows, write_project

pytestmark = pytest.mark.engine


def test_lightgbm_model_is_served_from_the_built_image(engines: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project")
    trained = mlops("run", cwd=project)
    assert trained.returncode == 0, trained.stderr
    model_dir = project / "outputs" / "model"
    name = f"mlops-test/lightgbm-{free_port()}"  # unique per run: never another test's image
    built = mlops("build", "--model", str(model_dir), "--registry", engines, "--image", name,
                  "--base-image", os.environ.get("MLOPS_BASE_IMAGE", "local/python-base:3.11"),
                  cwd=project, env={"MLOPS_MODEL_VERSION": "1", "MLOPS_OUTPUTS": str(tmp_path / "outputs")})
    assert built.returncode == 0, built.stderr + built.stdout
    build = json.loads((tmp_path / "outputs" / "build.json").read_text())
    digest = build["digest"]

    port = free_port()
    container = f"mlops-test-lightgbm-{port}"
    docker("run", "-d", "--name", container, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "-p", f"127.0.0.1:{port}:8080", digest)
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=120)
        assert docker("exec", container, "ls", "/srv/model/model.onnx")
        probe = "import importlib.util as u; print([n for n in ('lightgbm', 'sklearn', 'scipy') if u.find_spec(n)])"
        assert docker("exec", container, "python", "-c", probe) == "[]"

        rows = make_rows(3, n=50)
        features = rows[["colour", "size", "weight"]]
        body = [{k: (None if v != v else v) for k, v in row.items()} for row in features.to_dict(orient="records")]  # NaN -> null
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": body}, timeout=60)
        assert answer.status_code == 200, answer.text[:500]

        import mlflow.sklearn

        expected = mlflow.sklearn.load_model(str(model_dir)).predict(features)
        assert answer.json()["predictions"] == list(expected)
    finally:
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stderr
        docker("rm", "-f", container, check=False)
        docker("rmi", digest, *build["tags"], check=False)
        print(logs[-3000:])
