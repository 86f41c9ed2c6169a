"""serve the model over HTTP (default: the `challenger` from the local MLflow registry).

`mlops serve --port 8080` resolves the model (MLflow registry alias, models:/ or runs:/ URI, a local
MLflow model directory, or `registry:REF`: a version of MLOPS_MODEL_REGISTRY, pulled and, when a
public key or identity is configured, verified first; anything else is served as unsigned),
derives the request contract from mlops.yaml and starts the same server the image runs.
`resolve_model` is shared with `mlops build`. Like the build, it first converts the model to ONNX
next to it (pipeline/delivery/onnx.py; once per model file) and serves it with onnxruntime when
the graph agrees with scikit-learn, else with scikit-learn; it says which.
Predictions and labels are logged to `.mlops/predictions.db` unless MLOPS_PREDICTION_LOG says
otherwise (paths.py).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

DEFAULT_ALIAS = "challenger"
REGISTRY_PREFIX = "registry:"


@dataclass(frozen=True)
class ResolvedModel:
    """A local MLflow model directory and where it came from (for /version and image labels)."""

    path: Path
    uri: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    digest: str = ""  # the model artifact's digest in MLOPS_MODEL_REGISTRY; "" for a model from elsewhere


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="MLflow model directory, models:/ / runs:/ URI, or registry:REF (an alias, "
                                        "version or digest in MLOPS_MODEL_REGISTRY, verified when a key is "
                                        f"configured) (default: models:/<registered_model>@{DEFAULT_ALIAS})")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1, help="pre-forked worker processes (model loaded once, shared)")


def resolve_model(config: Any, model: str | None) -> ResolvedModel:
    """Turn --model (or the default alias) into a local directory, downloading registry models once."""
    if model and model.startswith(REGISTRY_PREFIX):
        return from_registry(config, model.removeprefix(REGISTRY_PREFIX))
    if model and Path(model).is_dir():
        path = Path(model).resolve()
        if not (path / "MLmodel").is_file():
            raise PipelineError(f"--model {model}: not an MLflow model directory (no MLmodel file)")
        return ResolvedModel(path, str(path), os.environ.get("MLOPS_MODEL_VERSION", "local"))
    uri = model or f"models:/{config.registered_model}@{DEFAULT_ALIAS}"
    if not uri.startswith(("models:/", "runs:/")):
        raise PipelineError(f"--model {model}: neither a model directory nor a models:/ or runs:/ URI")
    return _download(config, uri)


def from_registry(config: Any, ref: str) -> ResolvedModel:
    """A version of MLOPS_MODEL_REGISTRY, pulled once into .mlops/registry/ and verified on every
    use when a public key or identity is configured (a tampered or unsigned one is refused)."""
    from pipeline import registry
    from pipeline.paths import Paths

    repo = registry.configured()
    if repo is None:
        raise PipelineError(f"--model {REGISTRY_PREFIX}{ref}: no model registry; set {registry.ENV}")
    client = registry.connect(repo)
    version = registry.describe(client, ref or registry.CHAMPION)
    if version is None:
        raise PipelineError(f"--model {REGISTRY_PREFIX}{ref}: {repo} has no version {ref!r}")
    path = registry.pull(client, version.digest, Paths(config.root).state / "registry")
    notes = {key.removeprefix(registry.ANNOTATION).replace("-", "_"): value
             for key, value in version.annotations.items() if key.startswith(registry.ANNOTATION)}
    return ResolvedModel(path, repo.ref(version.digest), str(version.number), notes, version.digest)


def provenance_note(resolved: ResolvedModel) -> str:
    """What the operator should know about where the model came from and whether it was checked."""
    from pipeline import signing

    if not resolved.digest:
        return f"{resolved.uri} is not from the model registry: unsigned, not verified"
    checked = "signature verified" if signing.required() else "not verified (no public key or identity configured)"
    return f"{resolved.uri} (version {resolved.version}): {checked}"


def _download(config: Any, uri: str) -> ResolvedModel:
    from pipeline import tracking

    path, uri, version, tags = tracking.fetch_model(config, uri)
    return ResolvedModel(path, uri, version, tags)


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.delivery import onnx
    from pipeline.delivery.contract import from_config
    from pipeline.paths import Paths
    from pipeline.serving import predictor
    from pipeline.serving.server import serve

    config = load_config(args.config)
    resolved = resolve_model(config, args.model)
    print(f"serve: {provenance_note(resolved)}", flush=True)
    os.environ.setdefault("MLOPS_MODEL_VERSION", resolved.version)
    os.environ.setdefault("MLOPS_MODEL_URI", resolved.uri)
    for tag, env in (("git_sha", "MLOPS_GIT_SHA"), ("data_hash", "MLOPS_DATA_HASH")):
        if tag in resolved.tags:
            os.environ.setdefault(env, resolved.tags[tag])
    os.environ["MLOPS_PREDICTION_LOG"] = Paths(config.root).prediction_log
    contract = from_config(config)
    if predictor.load_onnx(resolved.path, contract) is None:  # none yet, or made from another model file
        conversion = onnx.convert(resolved.path, contract)
        print(f"serve: {conversion.runtime} serves the model ({conversion.detail})", flush=True)
    return serve(args.host, args.port, args.workers, resolved.path, contract=contract)
