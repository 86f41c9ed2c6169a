"""Promote: register the trained model as `challenger`; move `champion` only when every gate passed.

The champion alias moves in one final call, after the version is registered and tagged, so a
failure at any earlier point leaves `champion` where it was and loses no version. The registry
itself is reached only through `pipeline.tracking`.

With `MLOPS_MODEL_REGISTRY` set, a model that passed is also pushed to that OCI registry
(`pipeline.registry`), the durable store: a new version there, then `challenger` and, last,
`champion` moved by compare-and-swap. The registry is checked (reachable, credentials accepted)
before anything moves anywhere, and `champion` must still be the digest evaluate compared against.
`mlops run` registers `challenger` in MLflow only (`publish=False`): pull requests push nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pipeline import registry, tracking
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.paths import Paths


def register_challenger(config: Config, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register the run's model (once per run) and point `challenger` at it; return the version."""
    version = tracking.register_version(config, run_id, model_uri, tags)
    tracking.set_alias(config, tracking.CHALLENGER, version)
    return version


def promote(config: Config, train_info: dict[str, Any], evaluation: dict[str, Any], challenger_only: bool,
            publish: bool = True, defer_champion: bool = False) -> dict[str, Any]:
    """Register the challenger; move `champion` to it only if the evaluation passed against the
    champion that is current now (not one that has moved since). With a model registry
    configured (and `publish`), a passing model is pushed there and its aliases move too.
    `defer_champion` (a deploy follows): every gate must pass, `challenger` moves, and `champion`
    is left to `mlops deploy --env production`, which moves it once production is live; without a
    model registry nothing could follow the deploy, so `champion` moves here as before."""
    repo = registry.configured() if publish else None
    client = registry.connect(repo) if repo is not None else None  # down or refused: nothing moved yet
    tags: dict[str, str] = {k: str(train_info[k]) for k in ("git_sha", "data_hash", "config_hash") if k in train_info}
    version = register_challenger(config, train_info["run_id"], train_info["model_uri"], tags)
    previous = tracking.alias_version(config, tracking.CHAMPION)
    result: dict[str, Any] = {"model": config.registered_model, "version": version, "challenger": version,
                              "champion": previous, "moved": False}
    if challenger_only and client is None:
        return {**result, "note": "challenger only: champion untouched"}
    if not challenger_only and not evaluation.get("passed"):
        failed = "; ".join(evaluation.get("failures", [])) or "evaluation did not pass"
        raise PipelineError(f"promote: champion stays at version {previous or 'none'}: {failed}")
    defer_champion = defer_champion and client is not None  # only a registry alias can follow the deploy
    if client is not None:
        result.update(publish_version(client, config, train_info, evaluation, challenger_only or defer_champion,
                                      check_champion=not challenger_only))
        # MLflow's registry mirrors the OCI one: its version names the registry version and digest
        tracking.tag_version(config, version, "registry_version", str(result["registry_version"]))
        tracking.tag_version(config, version, "model_digest", result["model_digest"])
        if challenger_only:
            return {**result, "note": "challenger only: champion untouched"}
    if defer_champion:
        return {**result, "deferred": True,
                "note": "every gate passed; `champion` moves when production is live (mlops deploy --env production)"}
    if previous == version:
        return {**result, "note": f"version {version} is already `champion`"}
    compared = evaluation.get("champion_version")
    if client is None and previous != compared:  # with a model registry, its digest was the check
        raise PipelineError(
            f"promote: champion stays at version {previous}: the evaluation compared against "
            f"{'version ' + compared if compared else 'no registered champion'}; run `mlops evaluate` again"
        )
    tracking.tag_version(config, version, "validation_status", "passed")
    tracking.set_alias(config, tracking.CHAMPION, version)  # the one final move
    return {**result, "champion": version, "moved": True}


def lineage(config: Config, train_info: dict[str, Any]) -> dict[str, Any]:
    """What the registry artifact says about the model: where it came from and how good it is."""
    requirements = Paths(config.root).model_dir / "requirements.txt"
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "model": config.registered_model,
        "metrics": train_info.get("metrics"), "data-hash": train_info.get("data_hash"),
        "config-hash": train_info.get("config_hash"), "git-sha": train_info.get("git_sha"),
        "mlflow-run-id": train_info.get("run_id"), "estimator": config.train.estimator,
        "requirements": requirements.read_text(encoding="utf-8") if requirements.is_file() else None,
    }


def publish_version(client: registry.Client, config: Config, train_info: dict[str, Any], evaluation: dict[str, Any],
                    challenger_only: bool, check_champion: bool | None = None) -> dict[str, Any]:
    """Push the model as a registry version, move `challenger`, then (unless challenger-only)
    `champion`, each by compare-and-swap; a lost race or a moved champion fails before `champion`.
    `check_champion` (default: not challenger-only) refuses a champion evaluate did not compare with."""
    current = registry.aliases(client)
    expected, champion = evaluation.get("champion_digest"), current[registry.CHAMPION]
    pushed = reuse(client, train_info["run_id"], current)
    check = not challenger_only if check_champion is None else check_champion
    if check and champion != expected and not (pushed and pushed.digest == champion):
        raise registry.moved(client, registry.CHAMPION, expected, champion)
    # the model from this workspace's outputs, not train.json's absolute path: promote may run in
    # another job (main.yml) whose workspace folder differs (act; a self-hosted runner)
    pushed = pushed or push_signed(client, Paths(config.root).model_dir, lineage(config, train_info))
    registry.move_alias(client, registry.CHALLENGER, pushed.digest, current[registry.CHALLENGER])
    if not challenger_only:
        registry.move_alias(client, registry.CHAMPION, pushed.digest, expected)
    return {"registry": str(client.repo), "registry_version": pushed.number, "model_digest": pushed.digest,
            "signed": pushed.annotations.get(registry.ANNOTATION + "signed") == "true"}


def push_signed(client: registry.Client, model_dir: Path, notes: dict[str, Any]) -> registry.Version:
    """Sign the model (when MLOPS_MODEL_SIGNING_KEY is set) and push it with its signature."""
    import tempfile

    from pipeline import signing

    with tempfile.TemporaryDirectory() as tmp:
        signature = Path(tmp) / signing.SIGNATURE_NAME
        signed = signing.sign(model_dir, signature)
        return registry.push(client, model_dir, {**notes, "signed": signed}, signature if signed else None)


def reuse(client: registry.Client, run_id: str, current: dict[str, str | None]) -> registry.Version | None:
    """The version already pushed for this training run (promote run twice), found via the aliases."""
    for digest in dict.fromkeys(d for d in (current[registry.CHALLENGER], current[registry.CHAMPION]) if d):
        found = registry.describe(client, digest)
        if found and found.annotations.get(registry.ANNOTATION + "mlflow-run-id") == run_id:
            return found
    return None
