"""Fixtures for the serving tests: a real model trained from the template (saved the way
`mlops train` saves it: MLflow sklearn flavor, skops, signature), its copy converted to ONNX as
the build stages it, and the app around that."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def config():
    from pipeline.config import load_config

    return load_config(REPO / "mlops.yaml")


@pytest.fixture(scope="session")
def contract(config):
    from pipeline.delivery.contract import from_config

    return from_config(config)


@pytest.fixture(scope="session")
def model_dir(config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow model directory trained on the bundled data with the template's own model code."""
    import mlflow.sklearn
    import pandas as pd
    import skops.io as sio
    from mlflow.models import infer_signature

    from model import build_model
    from pipeline.tracking import pip_requirements
    from pipeline.train import model_spec

    frame = pd.read_csv(REPO / config.data.path)
    features, target = frame[config.feature_columns], frame[config.data.target]
    fitted = build_model(model_spec(config)).fit(features, target)
    out = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(
        fitted, out, serialization_format="skops",
        skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(fitted)),
        signature=infer_signature(features, fitted.predict(features)), input_example=features.head(3),
        pip_requirements=pip_requirements(config),  # what `mlops train` writes; the image installs from it
    )
    return out


@pytest.fixture(scope="session")
def onnx_model_dir(model_dir: Path, contract, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model converted to ONNX next to it, as `mlops build` stages it for the image."""
    import shutil

    from pipeline.delivery import onnx

    out = shutil.copytree(model_dir, tmp_path_factory.mktemp("onnx-model") / "model")
    conversion = onnx.convert(out, contract)
    assert conversion.ok, conversion.detail
    return out


@pytest.fixture(scope="session")
def good_row() -> dict:
    return {"species": "Gentoo", "island": "Biscoe", "clutch_completion": "yes", "culmen_length_mm": 50.5,
            "culmen_depth_mm": 16.0, "flipper_length_mm": 228.0, "body_mass_g": 5800.0, "delta_15n": 8.3, "delta_13c": -26.1}


@pytest.fixture()
def app(onnx_model_dir: Path, contract):
    """The app as the image runs it: the model served by onnxruntime."""
    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings

    return create_app(Settings(model_dir=onnx_model_dir, model_version="7", git_sha="abc123"), contract)


@pytest.fixture()
def client(app) -> Iterator:
    """An httpx client of `app` served for real on a loopback port (tests/pipeline/serving/live.py)."""
    from tests.pipeline.serving.live import in_thread

    with in_thread(app) as http:
        yield http


@pytest.fixture(autouse=True)
def _prediction_log_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's servers log predictions under its own tmp_path (never the image's /srv/state)."""
    path = tmp_path / "predictions.db"
    monkeypatch.setenv("MLOPS_PREDICTION_LOG", str(path))
    return path
