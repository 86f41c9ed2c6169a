"""Shared fixtures. Engine-backed tests call `need_engine`, which skips with the reason on a
laptop that lacks the engine, and fails instead when MLOPS_REQUIRE_ENGINES=1 (set by .ci/run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def need_engine(available: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) when a real engine such as Docker or act is missing."""
    if available:
        return
    if os.environ.get("MLOPS_REQUIRE_ENGINES") == "1":
        pytest.fail(f"required engine missing (MLOPS_REQUIRE_ENGINES=1): {reason}")
    pytest.skip(reason)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    need_engine(path is not None, f"{name} is not installed")
    return path or name


@pytest.fixture()
def make_config(tmp_path: Path):
    """Write a variant of the bundled mlops.yaml (and its data) into tmp_path; return its path."""
    import yaml

    def make(mutate=lambda raw: None) -> Path:
        raw = yaml.safe_load((REPO / "mlops.yaml").read_text())
        mutate(raw)
        (tmp_path / "data").mkdir(exist_ok=True)
        for name in ("penguins.csv", "reference.csv"):
            shutil.copy(REPO / "data" / name, tmp_path / "data" / name)
        path = tmp_path / "mlops.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return make


@pytest.fixture(autouse=True)
def _local_tracking():
    """Tests use the per-folder sqlite store, never a server configured in the shell. MLflow
    exports MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID into os.environ when a test configures
    it in-process; the whole environment is restored after each test so nothing leaks into the
    subprocesses of the next one."""
    saved = dict(os.environ)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLOPS_OUTPUTS"):
        os.environ.pop(name, None)
    # no model registry unless a test names one: on GitHub Actions an unset one means GHCR
    os.environ["MLOPS_MODEL_REGISTRY"] = "off"
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    """A copy of the template (config, data, code) in a temp folder, with fresh state."""
    dest = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", ".mlops", "outputs", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest
