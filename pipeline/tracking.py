"""MLflow: where runs go, what a run records, and how models are saved and loaded.

Measured on this template: `log_model` spends about 5 s inferring pip requirements unless they
are given, so they are passed explicitly. Models are saved with skops (no pickle), so loading a
champion cannot execute code; the types the fitted pipeline needs are listed as trusted at save
time, when we built them ourselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.paths import Paths

RUNTIME_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")
TRACKED_PACKAGES = (*RUNTIME_PACKAGES, "mlflow", "pandera")


def configure(config: Config) -> str:
    """Point MLflow at the configured store (local sqlite by default) and the project experiment."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    paths = Paths(config.root)
    uri = paths.tracking_uri
    if uri.startswith("sqlite:///"):
        paths.state.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(config.project)
    if experiment is None:
        location = paths.artifact_root.as_uri() if uri.startswith("sqlite:///") else None
        mlflow.create_experiment(config.project, artifact_location=location)
    mlflow.set_experiment(config.project)
    return uri


def package_versions(names: tuple[str, ...] | list[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of `names`, skipping those not installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def pip_requirements(config: Config) -> list[str]:
    """The saved model's requirements.txt: the base runtime plus what its estimator declares in
    model/estimator.py, pinned to the installed versions (passed explicitly: inference costs
    about 5 s). `mlops build` installs the image from this list."""
    from model import requirements
    from pipeline.train import model_spec

    names = [*RUNTIME_PACKAGES, *requirements(model_spec(config))]
    versions = package_versions(names)
    return [f"{name}=={versions[name]}" if name in versions else name for name in dict.fromkeys(names)]


def git_sha(root: Path) -> str:
    env_sha = os.environ.get("GITHUB_SHA")
    if env_sha:
        return env_sha
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: Config) -> str:
    dumped = json.dumps(config.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(dumped.encode()).hexdigest()


def trusted_types(config: Config, model: Any) -> list[str]:
    """The non-default types the fitted model needs skops to trust when it is loaded.

    Declared by model/ (its features and the estimator's record: free); for an estimator that
    declares none, found by serialising the model once more (about 0.4 s for a 200-tree forest).
    """
    from model import trusted_types as declared_types
    from pipeline.train import model_spec

    declared = declared_types(model_spec(config))
    if declared is not None:
        return declared
    import skops.io as sio

    return list(sio.get_untrusted_types(data=sio.dumps(model)))


def registry_may_hold_champion(config: Config) -> bool:
    """False when the local registry certainly has no `champion` (saves starting MLflow)."""
    from pipeline.promote import CHAMPION, local_aliases

    aliases = local_aliases(config)
    return aliases is None or CHAMPION in aliases


def log_training(
    config: Config,
    model: Any,
    example: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    model_dir: Path,
) -> dict[str, str]:
    """Log one training run and save the model; return run id, model URI and model id."""
    import mlflow
    from mlflow.models import infer_signature

    configure(config)
    signature = infer_signature(example, model.predict(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run() as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
            mlflow.set_tags(tags)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(config),
                serialization_format="skops",
                skops_trusted_types=trusted_types(config, model),
                metadata={"project": config.project, "task": config.task, **tags},
            )
    save_local_copy(info.model_uri, model_dir)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "model_id": info.model_id}


def save_local_copy(model_uri: str, model_dir: Path) -> None:
    """Copy the logged model next to the outputs: CI caches it as main's champion."""
    import shutil

    import mlflow

    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(model_dir.parent / ".model-download"))
    downloaded = model_dir.parent / ".model-download"
    inner = downloaded / "model" if (downloaded / "model" / "MLmodel").is_file() else downloaded
    shutil.move(str(inner), str(model_dir))
    shutil.rmtree(downloaded, ignore_errors=True)


def load_model(uri: str) -> Any:
    """Load an sklearn model saved by this template (a directory path or a models:/ URI)."""
    import mlflow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mlflow.sklearn.load_model(uri)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad location
        raise PipelineError(f"cannot load model from {uri}: {type(exc).__name__}: {exc}") from None
