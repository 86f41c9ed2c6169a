"""MLflow, all of it: where runs go, what a run records, how models are saved and loaded, and the
registry's versions and aliases (through MLflow's client API, never its tables).

Measured on this template: `log_model` spends about 5 s inferring pip requirements unless they
are given, so they are passed explicitly. Models are saved with skops (no pickle), so loading a
champion cannot execute code; the types the fitted pipeline needs are listed as trusted at save
time, when we built them ourselves.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import subprocess
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.paths import Paths

CHALLENGER = "challenger"
CHAMPION = "champion"
RUNTIME_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")
TRACKED_PACKAGES = (*RUNTIME_PACKAGES, "mlflow", "pandera")


_CONFIGURED: set[tuple[str, str]] = set()
P = ParamSpec("P")
R = TypeVar("R")


class Remote(Protocol):
    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...


_REMOTE: Remote | None = None  # set while `mlops run` keeps MLflow in a second process (pipeline.tracking_worker)


def remote(func: Callable[P, R]) -> Callable[P, R]:
    """MLflow work that runs in the tracking process while one is active, else right here."""

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if _REMOTE is None:
            return func(*args, **kwargs)
        return cast(R, _REMOTE.call(func.__name__, args, kwargs))

    return call



def configure(config: Config) -> str:
    """Point MLflow at the configured store (local sqlite by default) and the project experiment."""
    paths = Paths(config.root)
    uri = paths.tracking_uri
    if (uri, config.project) in _CONFIGURED:
        return uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if uri == paths.local_tracking_uri:
        paths.state.mkdir(parents=True, exist_ok=True)
        seed_local_store(paths.state / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(config.project)
    if experiment is None:
        location = paths.artifact_root.as_uri() if uri.startswith("sqlite:///") else None
        mlflow.create_experiment(config.project, artifact_location=location)
    mlflow.set_experiment(config.project)
    _CONFIGURED.add((uri, config.project))
    return uri


def seed_local_store(database: Path) -> None:
    """Start a new local store from an empty one MLflow migrated earlier on this machine.

    Why: creating a store runs all of MLflow's schema migrations (about 7 s here, more than the
    whole rest of a cold run). The first new store per MLflow version pays that once and leaves
    a copy of its empty, migrated database in the user's cache (`MLOPS_CACHE_DIR`, default
    ~/.cache/mlops-template); later new stores start from that copy. MLflow still checks the
    schema version on every connection, so a stale copy cannot be used silently.
    """
    import shutil
    import sqlite3

    if database.exists():
        return
    version = metadata.version("mlflow")
    cache = Path(os.environ.get("MLOPS_CACHE_DIR")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-template")
    template = cache / f"mlflow-{version}-empty.db"
    if template.is_file():
        shutil.copyfile(template, database)
        return
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{database}").search_experiments(max_results=1)  # creates and migrates the store
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f".{template.name}.{os.getpid()}")
        with sqlite3.connect(database) as source, sqlite3.connect(partial) as copy:
            source.backup(copy)
        os.replace(partial, template)
    except (OSError, sqlite3.Error):
        pass  # no writable cache: every new store migrates, as MLflow does by default


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


@remote
def log_training(
    config: Config,
    model: Any,
    example: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    model_dir: Path,
    trials: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Log one training run and save the model; return run id, model URI and model id.

    `trials` (a hyperparameter search's candidates: params, mean, std, rank, fit_seconds) become
    child runs of it, so the MLflow UI shows the search under the run that produced the model.
    """
    import mlflow
    from mlflow.models import infer_signature

    configure(config)
    # The signature comes from a few rows; no input example is logged: MLflow would load the
    # model back to validate it (about 1 s) and the serving contract already comes from mlops.yaml.
    with warnings.catch_warnings():  # its hint on int columns and missing values: the server takes both
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, model.predict(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run() as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
            mlflow.set_tags(tags)
            log_trials(trials or [])
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=pip_requirements(config),
                serialization_format="skops",
                skops_trusted_types=trusted_types(config, model),
                metadata={"project": config.project, "task": config.task, **tags},
            )
    save_local_copy(info.model_uri, model_dir)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "model_id": info.model_id}


def log_trials(trials: list[dict[str, Any]]) -> None:
    """Each search trial as a child run of the active run: its params, cross-validated score, rank."""
    import mlflow

    for number, trial in enumerate(trials, start=1):
        with mlflow.start_run(run_name=f"trial-{number}", nested=True):
            mlflow.log_params(trial["params"])
            mlflow.log_metrics({"cv_mean": trial["mean"], "cv_std": trial["std"], "fit_seconds": trial["fit_seconds"]})
            mlflow.set_tags({"mlops.trial": str(number), "mlops.rank": str(trial["rank"])})


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


@remote
def load_model(uri: str) -> Any:
    """Load an sklearn model saved by this template (a directory path or a models:/ URI)."""
    import mlflow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mlflow.sklearn.load_model(uri)
    except Exception as exc:
        raise PipelineError(f"cannot load model from {uri}: {type(exc).__name__}: {exc}") from None


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


@remote
def register_version(config: Config, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """The registry version of the run's model, registered once per run; returns the version."""
    import mlflow

    configure(config)
    name = config.registered_model
    existing = _client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return str(max(int(v.version) for v in existing))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(mlflow.register_model(model_uri, name, tags=tags).version)


@remote
def alias_version(config: Config, alias: str) -> str | None:
    """The version behind `alias`, or None when there is none (or no registered model yet)."""
    from mlflow.exceptions import MlflowException

    configure(config)
    try:
        return str(_client().get_model_version_by_alias(config.registered_model, alias).version)
    except MlflowException:
        return None


def alias_uri(config: Config, alias: str) -> str:
    return f"models:/{config.registered_model}@{alias}"


@remote
def set_alias(config: Config, alias: str, version: str) -> None:
    configure(config)
    _client().set_registered_model_alias(config.registered_model, alias, version)


@remote
def tag_version(config: Config, version: str, key: str, value: str) -> None:
    configure(config)
    _client().set_model_version_tag(config.registered_model, version, key, value)


def follow_alias(config: Config, alias: str, digest: str) -> str | None:
    """Point MLflow's `alias` at the version promote tagged with this model registry digest, so
    MLflow's registry mirrors the OCI one; the version, or None when no version carries it."""
    configure(config)
    client = _client()
    for found in client.search_model_versions(f"name='{config.registered_model}'"):
        if (found.tags or {}).get("model_digest") == digest:
            client.set_registered_model_alias(config.registered_model, alias, found.version)
            return str(found.version)
    return None


def registry_fingerprint(config: Config) -> str | None:
    """The local store's bytes (database plus any journal), or None for a tracking server.

    When the fingerprint equals the one recorded right after our own last write, nobody has
    changed the registry since, so the step cache may trust what it recorded then without
    starting MLflow; any other value means: ask MLflow.
    """
    from pipeline.files import digest

    paths = Paths(config.root)
    if paths.tracking_uri != paths.local_tracking_uri:
        return None
    database = paths.state / "mlflow.db"
    return "|".join(digest(database.with_name(database.name + suffix)) for suffix in ("", "-journal", "-wal"))


def fetch_model(config: Config, uri: str) -> tuple[Path, str, str, dict[str, str]]:
    """A registry model (`models:/name@alias`, `models:/name/N`) or run model as a local folder
    under .mlops/serving (downloaded once): (path, pinned URI, version, version tags)."""
    import mlflow

    configure(config)
    paths = Paths(config.root)
    version, tags = "unknown", {}
    try:
        if uri.startswith("models:/"):
            name, _, ref = uri.removeprefix("models:/").partition("@")
            client = _client()
            if ref:
                found = client.get_model_version_by_alias(name, ref)
            else:
                name, _, number = name.partition("/")
                found = client.get_model_version(name, number)
            version, tags = str(found.version), dict(found.tags or {})
            uri = f"models:/{name}/{version}"
        dest = paths.state / "serving" / uri.replace(":/", "-").replace("/", "-")
        if not (dest / "MLmodel").is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
            dest = local if (local / "MLmodel").is_file() else dest
    except Exception as exc:  # MLflow raises many types; the user needs one line
        raise PipelineError(f"cannot load model {uri} from {paths.tracking_uri}: {exc}. "
                            "Train and register one first (`mlops run`, `mlops promote`) or pass --model DIR") from None
    return dest.resolve(), uri, version, tags
