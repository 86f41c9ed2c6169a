"""An estimator added in model/ only (plus its optional extra) goes all the way: `mlops run`
trains it, and its declared requirements land, pinned, in the MLflow model's requirements.txt and
in the serving image's. LightGBM is the built-in example; the data is generated (a categorical
column and missing values), the config is the bundled mlops.yaml with data and columns edited."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def make_rows(seed: int, n: int = 400) -> pd.DataFrame:
    """A label driven by `size` and `colour`, with some values missing in both."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    size = rng.normal(10, 3, size=n)
    weight = rng.normal(50, 10, size=n)
    score = (size - 10) / 3 + np.where(colour == "red", 1.0, -0.5) + rng.normal(0, 0.5, size=n)
    frame = pd.DataFrame({"row_id": [f"r{seed}-{i}" for i in range(n)], "colour": colour, "size": size.round(2),
                          "weight": weight.round(1), "label": np.where(score > 0, "yes", "no")})
    frame.loc[rng.choice(n, n // 20, replace=False), "size"] = np.nan
    frame.loc[rng.choice(n, n // 20, replace=False), "colour"] = None
    return frame


def write_project(dest: Path, estimator: str = "lightgbm", params: dict | None = None) -> Path:
    """A project folder (mlops.yaml + data/) a forker would have after pointing the template at
    their own CSV and choosing `estimator`."""
    (dest / "data").mkdir(parents=True, exist_ok=True)
    make_rows(1).to_csv(dest / "data" / "train.csv", index=False)
    make_rows(2).to_csv(dest / "data" / "reference.csv", index=False)
    raw = yaml.safe_load((REPO / "mlops.yaml").read_text())
    raw["project"] = "plugin-demo"
    raw["data"].update(path="data/train.csv", reference="data/reference.csv", target="label", id_column="row_id",
                       positive_class="yes")
    raw["validate"]["columns"] = {
        "row_id": {"type": "string", "unique": True},
        "colour": {"type": "category", "allowed": ["red", "green", "blue"], "nullable": True, "max_null_rate": 0.1},
        "size": {"type": "float", "nullable": True, "max_null_rate": 0.1},
        "weight": {"type": "float"},
        "label": {"type": "category", "allowed": ["no", "yes"]},
    }
    raw["train"] = {"estimator": estimator, "params": params if params is not None else {"n_estimators": 50}}
    raw["evaluate"] = {
        "gates": [{"metric": "accuracy", "threshold": 0.7}],
        "champion": {"metric": "roc_auc", "tolerance": 0.02},
        "behaviour": {"minimum": [
            {"name": "big red is yes", "row": {"colour": "red", "size": 16.0, "weight": 50.0}, "expect": "yes"},
            {"name": "small blue is no", "row": {"colour": "blue", "size": 4.0, "weight": 50.0}, "expect": "no"},
        ]},
    }
    raw["promote"] = {"registered_model": "plugin-demo"}
    (dest / "mlops.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest


def mlops(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=project, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("estimator", "package", "booster"),
                         [("lightgbm", "lightgbm", "lightgbm.basic.Booster"), ("xgboost", "xgboost-cpu", "xgboost.core.Booster")])
def test_builtin_boosters_carry_their_requirements_into_the_model_and_the_image(tmp_path: Path, estimator: str,
                                                                                package: str, booster: str) -> None:
    """xgboost also proves string class labels ("yes"/"no") work with an integer-label estimator."""
    project = write_project(tmp_path / "project", estimator)
    result = mlops(project, "run")
    assert result.returncode == 0, result.stderr
    model_dir = project / "outputs" / "model"
    pinned = f"{package}=={metadata.version(package)}"
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert pinned in requirements
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in requirements
    trusted = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]["skops_trusted_types"]
    assert booster in trusted

    # served by scikit-learn (--no-onnx): the image carries the booster as trained
    staged = mlops(project, "build", "--model", str(model_dir), "--no-onnx", "--context", str(tmp_path / "context"))
    assert staged.returncode == 0, staged.stderr
    assert "build: scikit-learn serves the model (--no-onnx)" in staged.stdout
    image_requirements = (tmp_path / "context" / "requirements.txt").read_text().split()
    assert pinned in image_requirements
    assert f"fastapi=={metadata.version('fastapi')}" in image_requirements
    assert not [line for line in image_requirements if line.startswith(("mlflow", "onnxruntime"))]
    # by default both convert (onnxmltools' converters, registered by model/; XGBoost's through
    # EncodedLabels, in the original labels): onnxruntime serves, without the booster or scikit-learn
    staged = mlops(project, "build", "--model", str(model_dir), "--context", str(tmp_path / "context"))
    assert staged.returncode == 0, staged.stderr
    names = {line.split("==")[0] for line in (tmp_path / "context" / "requirements.txt").read_text().split()}
    assert "build: onnxruntime serves the model" in staged.stdout
    assert "onnxruntime" in names and not names & {package, "scikit-learn", "scipy"}
    assert json.loads((project / "outputs" / "evaluate.json").read_text())["passed"] is True


def test_a_sklearn_model_needs_nothing_beyond_the_base_runtime(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", "random_forest", {"n_estimators": 20})
    assert mlops(project, "train").returncode == 1  # validate first: the step order holds
    assert mlops(project, "validate").returncode == 0
    trained = mlops(project, "train")
    assert trained.returncode == 0, trained.stderr
    names = {line.split("==")[0] for line in (project / "outputs" / "model" / "requirements.txt").read_text().split()}
    assert names - {"mlflow"} == {"scikit-learn", "numpy", "scipy", "pandas", "skops"}  # MLflow always adds itself


def test_bad_estimator_or_params_end_in_one_line(tmp_path: Path) -> None:
    for estimator, params, message in [
        ("catboost", {},
         "error: train.estimator: unknown estimator 'catboost'; known: hist_gradient_boosting, lightgbm, linear, "
         "random_forest, xgboost"),
        ("random_forest", {"n_trees": 5},
         "error: train.params: RandomForestClassifier.__init__() got an unexpected keyword argument 'n_trees'"),
    ]:
        project = write_project(tmp_path / estimator, estimator, params)
        assert mlops(project, "validate").returncode == 0
        result = mlops(project, "train")
        assert (result.returncode, result.stderr.strip()) == (1, message)


def test_missing_optional_package_ends_in_one_line(tmp_path: Path) -> None:
    """As on a fork installed without the `lightgbm` extra (import blocked in the CLI process)."""
    project = write_project(tmp_path / "project")
    assert mlops(project, "validate").returncode == 0
    blocked = "import sys; sys.modules['lightgbm'] = None; from pipeline.cli import main; sys.exit(main(['train']))"
    result = subprocess.run([sys.executable, "-c", blocked], cwd=project, capture_output=True, text=True, timeout=600)
    assert (result.returncode, result.stderr.strip()) == (
        1, "error: train.estimator: 'lightgbm' needs the package lightgbm: pip install -e '.[lightgbm]'")
    assert not (project / "outputs" / "model").exists()
