"""Promote: register the trained model as `challenger`; move `champion` only when every gate passed.

The champion alias moves in one final call, after the version is registered and tagged, so a
failure at any earlier point leaves `champion` where it was and loses no version. The registry
itself is reached only through `pipeline.tracking`.
"""

from __future__ import annotations

from typing import Any

from pipeline import tracking
from pipeline.config import Config
from pipeline.errors import PipelineError


def register_challenger(config: Config, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register the run's model (once per run) and point `challenger` at it; return the version."""
    version = tracking.register_version(config, run_id, model_uri, tags)
    tracking.set_alias(config, tracking.CHALLENGER, version)
    return version


def promote(config: Config, train_info: dict[str, Any], evaluation: dict[str, Any], challenger_only: bool) -> dict[str, Any]:
    """Register the challenger; move `champion` to it only if the evaluation passed against the
    champion that is current now (not one that has moved since)."""
    tags: dict[str, str] = {k: str(train_info[k]) for k in ("git_sha", "data_hash", "config_hash") if k in train_info}
    version = register_challenger(config, train_info["run_id"], train_info["model_uri"], tags)
    previous = tracking.alias_version(config, tracking.CHAMPION)
    result = {"model": config.registered_model, "version": version, "challenger": version, "champion": previous, "moved": False}
    if challenger_only:
        return {**result, "note": "challenger only: champion untouched"}
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
    tracking.tag_version(config, version, "validation_status", "passed")
    tracking.set_alias(config, tracking.CHAMPION, version)  # the one final move
    return {**result, "champion": version, "moved": True}
