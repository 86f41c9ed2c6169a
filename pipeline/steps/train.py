"""`mlops train`: fit the model from model/ on the validated data, log it to MLflow, keep a copy."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from pipeline.errors import PipelineError
from pipeline.steps.base import Context, Step, StepResult
from pipeline.steps.validate import ValidateResult

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.search import SearchOutcome


class TrialResult(BaseModel):
    """One search candidate: its params, cross-validated mean and std of the metric, rank (1 = best)."""

    params: dict[str, Any]
    mean: float
    std: float
    rank: int
    fit_seconds: float


class SearchResult(BaseModel):
    """What `train.search` found: the best params (refit on the whole training split) and every trial."""

    method: str
    metric: str
    direction: str
    folds: int
    best_params: dict[str, Any]
    best_score: float
    trials: list[TrialResult]


class TrainResult(StepResult):
    run_id: str
    model_uri: str
    model_id: str | None = None
    metrics: dict[str, float]
    params: dict[str, Any]
    git_sha: str
    data_hash: str
    config_hash: str
    fit_seconds: float
    model_dir: str
    tracking_uri: str
    packages: dict[str, str] = Field(default_factory=dict)
    backend: str = "local"
    search: SearchResult | None = None

    def summary_lines(self) -> list[str]:
        shown = ", ".join(f"{k}={v:.3f}" for k, v in self.metrics.items())
        lines = [f"train: run {self.run_id} fitted in {self.fit_seconds:.2f}s ({self.backend}); test {shown}"]
        if self.search:
            s = self.search
            lines.append(f"train: search ({s.method}, {len(s.trials)} trials, {s.folds}-fold {s.metric}) "
                         f"best {s.best_score:.4f} with {s.best_params}")
        return lines


def run(ctx: Context) -> tuple[int, TrainResult]:
    """Train on the data validate passed, log to MLflow, save the model to outputs/model."""
    from pipeline import tracking
    from pipeline.cluster import ray_address
    from pipeline.train import features_and_target, new_model, train

    config = ctx.config
    validation = ctx.read_result(ValidateResult, "validate.json", "train")
    data_hash = ctx.file_hash(ctx.data_path)
    if not validation.passed:
        raise PipelineError("train: the data failed validation; fix it and run `mlops validate`")
    if validation.data_hash != data_hash:
        raise PipelineError("train: the data changed since it was validated; run `mlops validate`")
    model = new_model(config)  # a bad estimator name or parameter fails before the data is read or fitted
    if config.train.search:
        from pipeline.search import pipeline_names

        pipeline_names(model, config.train.search.space)  # so does a search over a parameter it does not take
    address = ray_address(config, os.environ)
    result = train(config, ctx.data(), address)
    search = _search_result(config, result.search)
    features, _ = features_and_target(config, result.train.head(1000))
    complete = features.dropna()
    example = complete.head(5) if len(complete) else features.head(5)
    best = search.best_params if search else {}
    params = {"estimator": config.train.estimator, **config.train.params, **best, "seed": config.seed,
              "test_size": config.data.test_size, "rows_train": len(result.train), "rows_test": len(result.test)}
    packages = tracking.package_versions()
    tags = {"git_sha": tracking.git_sha(config.root), "data_hash": data_hash, "config_hash": tracking.config_hash(config),
            **{f"version.{k}": v for k, v in packages.items()}}
    trials = [t.model_dump() for t in search.trials] if search else []
    logged = tracking.log_training(config, result.model, example, params, result.metrics, tags, ctx.paths.model_dir,
                                   trials=trials)
    ctx.trained = result.model
    info = TrainResult(**logged, metrics=result.metrics, params=params, git_sha=tags["git_sha"], data_hash=data_hash,
                       config_hash=tags["config_hash"], fit_seconds=result.fit_seconds, model_dir=str(ctx.paths.model_dir),
                       tracking_uri=ctx.paths.tracking_uri, packages=packages,
                       backend=f"ray ({address})" if address else "local", search=search)
    return 0, info


def _search_result(config: Config, outcome: SearchOutcome | None) -> SearchResult | None:
    if outcome is None or config.train.search is None:
        return None
    metric, direction = config.search_metric
    spec = config.train.search
    trials = [TrialResult(params=t.params, mean=t.mean, std=t.std, rank=t.rank, fit_seconds=t.fit_seconds)
              for t in outcome.trials]
    return SearchResult(method=spec.method, metric=metric, direction=direction, folds=spec.folds,
                        best_params=outcome.best_params, best_score=outcome.best_score, trials=trials)


STEP = Step(
    name="train",
    help="train the model from model/ and log it to MLflow",
    sections=("data", "validate", "train"),
    reads=("validate.json",),
    writes=("train.json", "model"),
    result=TrainResult,
    result_file="train.json",
    run=run,
    reads_data=True,
    action_outputs={"run-id": "run_id", "model-dir": "model_dir", "result": "@train.json"},
)
