"""`mlops train`: fit the model from model/ on the validated data, log it to MLflow, keep a copy."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipeline.errors import PipelineError
from pipeline.steps.base import Context, Step, StepResult
from pipeline.steps.validate import ValidateResult


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

    def summary_lines(self) -> list[str]:
        shown = ", ".join(f"{k}={v:.3f}" for k, v in self.metrics.items())
        return [f"train: run {self.run_id} fitted in {self.fit_seconds:.2f}s; test {shown}"]


def run(ctx: Context) -> tuple[int, TrainResult]:
    """Train on the data validate passed, log to MLflow, save the model to outputs/model."""
    from pipeline import tracking
    from pipeline.train import features_and_target, new_model, train

    config = ctx.config
    validation = ctx.read_result(ValidateResult, "validate.json", "train")
    data_hash = ctx.file_hash(ctx.data_path)
    if not validation.passed:
        raise PipelineError("train: the data failed validation; fix it and run `mlops validate`")
    if validation.data_hash != data_hash:
        raise PipelineError("train: the data changed since it was validated; run `mlops validate`")
    new_model(config)  # a bad estimator name or parameter fails before the data is read or fitted
    result = train(config, ctx.data())
    features, _ = features_and_target(config, result.train.head(1000))
    complete = features.dropna()
    example = complete.head(5) if len(complete) else features.head(5)
    params = {"estimator": config.train.estimator, **config.train.params, "seed": config.seed,
              "test_size": config.data.test_size, "rows_train": len(result.train), "rows_test": len(result.test)}
    packages = tracking.package_versions()
    tags = {"git_sha": tracking.git_sha(config.root), "data_hash": data_hash, "config_hash": tracking.config_hash(config),
            **{f"version.{k}": v for k, v in packages.items()}}
    logged = tracking.log_training(config, result.model, example, params, result.metrics, tags, ctx.paths.model_dir)
    ctx.trained = result.model
    info = TrainResult(**logged, metrics=result.metrics, params=params, git_sha=tags["git_sha"], data_hash=data_hash,
                       config_hash=tags["config_hash"], fit_seconds=result.fit_seconds, model_dir=str(ctx.paths.model_dir),
                       tracking_uri=ctx.paths.tracking_uri, packages=packages)
    return 0, info


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
