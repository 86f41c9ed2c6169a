"""Promote: register the trained model as `challenger`; move `champion` only when every gate passed.

The champion alias moves in one final call, after the version is registered and tagged, so a
failure at any earlier point leaves `champion` where it was and loses no version.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.paths import Paths

CHALLENGER = "challenger"
CHAMPION = "champion"


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def register_challenger(config: Config, train_info: dict[str, Any]) -> str:
    """Register the run's model (once per run) and point `challenger` at it; return the version."""
    import mlflow

    client = _client()
    name = config.registered_model
    existing = client.search_model_versions(f"name='{name}' and run_id='{train_info['run_id']}'")
    if existing:
        version = str(max(int(v.version) for v in existing))
    else:
        tags = {k: str(train_info[k]) for k in ("git_sha", "data_hash", "config_hash") if k in train_info}
        version = str(mlflow.register_model(train_info["model_uri"], name, tags=tags).version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def champion_version(config: Config) -> str | None:
    """The version behind the `champion` alias, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(config.registered_model, CHAMPION).version)
    except MlflowException:
        return None


def promote(config: Config, train_info: dict[str, Any], evaluation: dict[str, Any], challenger_only: bool) -> dict[str, Any]:
    """Register the challenger; move `champion` to it only if the evaluation passed against the
    champion that is current now (not one that has moved since)."""
    version = register_challenger(config, train_info)
    previous = champion_version(config)
    result = {"model": config.registered_model, "version": version, "challenger": version, "champion": previous, "moved": False}
    if challenger_only:
        result["note"] = "challenger only: champion untouched"
        return result
    if not evaluation.get("passed"):
        failed = "; ".join(evaluation.get("failures", [])) or "evaluation did not pass"
        raise PipelineError(f"promote: champion stays at version {previous or 'none'}: {failed}")
    if previous == version:
        return {**result, "note": f"version {version} is already `champion`"}
    compared = evaluation.get("champion_version")
    if previous != compared:
        raise PipelineError(
            f"promote: champion stays at version {previous}: the evaluation compared against "
            f"{'version ' + compared if compared else 'no registered champion'}; run `mlops evaluate` again"
        )
    client = _client()
    client.set_model_version_tag(config.registered_model, version, "validation_status", "passed")
    client.set_registered_model_alias(config.registered_model, CHAMPION, version)  # the one final move
    return {**result, "champion": version, "moved": True}


def local_aliases(config: Config) -> dict[str, str] | None:
    """The registered model's aliases read straight from the local sqlite store (no MLflow
    import, so the step cache stays cheap); None when tracking goes to a server."""
    import sqlite3

    paths = Paths(config.root)
    if paths.tracking_uri != paths.local_tracking_uri:
        return None
    database = paths.state / "mlflow.db"
    if not database.is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute("select alias, version from registered_model_aliases where name = ?", (config.registered_model,))
            return {alias: str(version) for alias, version in rows}
    except sqlite3.Error:
        return {}
