"""Engine fixtures for the infra tests: the real engine, registry and swarm, and the serving image
built once per session with `mlops build` from a model trained by the template's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need_engine
from tests.engines import REGISTRY, RUN_TAG, EngineUnavailable, ensure_base_image, ensure_docker, ensure_registry
from tests.pipeline.serving.conftest import config, contract, model_dir  # noqa: F401 - shared fixtures

REPO = Path(__file__).resolve().parents[2]
IMAGE = f"mlops-test-{RUN_TAG}/serving"  # unique per test run


def mlops(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
          timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, as CI and users do."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def engines() -> str:
    """Docker engine, registry and the air-gapped base image; returns the registry address."""
    try:
        ensure_docker()
        ensure_registry()
        ensure_base_image()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
    return REGISTRY


def build_image(model_dir: Path, registry: str, version: str, outputs: Path) -> dict:  # noqa: F811
    """`mlops build` for model `version`; returns outputs/build.json."""
    result = mlops("build", "--model", str(model_dir), "--registry", registry, "--image", IMAGE,
                   "--base-image", os.environ.get("MLOPS_BASE_IMAGE", "local/python-base:3.11"),
                   env={"MLOPS_MODEL_VERSION": version, "MLOPS_OUTPUTS": str(outputs)})
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads((outputs / "build.json").read_text())


@pytest.fixture(scope="session")
def built_image(engines: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """The serving image for model version 1, built and pushed once per session."""
    return build_image(model_dir, engines, "1", tmp_path_factory.mktemp("build-v1"))
