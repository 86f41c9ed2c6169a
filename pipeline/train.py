"""Train: split with the seed, fit the model from `model/` (or search its params, `train.search`),
score it on the held-out split.

Pure: data in, fitted model and metrics out. MLflow logging lives in `pipeline.tracking`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from model import ModelSpec, build_model
from pipeline.config import Config
from pipeline.data import split
from pipeline.errors import PipelineError
from pipeline.metrics import score
from pipeline.search import SearchOutcome, run_search

NUMERIC_TYPES = {"int", "float"}


@dataclass
class TrainResult:
    model: Any
    train: pd.DataFrame
    test: pd.DataFrame
    metrics: dict[str, float]
    fit_seconds: float
    search: SearchOutcome | None = None


def model_spec(config: Config) -> ModelSpec:
    """What model/ needs from mlops.yaml: the task, feature columns by kind, the estimator."""
    columns = config.validate.columns
    return ModelSpec(
        task=config.task,
        numeric=tuple(c for c in config.feature_columns if columns[c].type in NUMERIC_TYPES),
        categorical=tuple(c for c in config.feature_columns if columns[c].type not in NUMERIC_TYPES),
        estimator=config.train.estimator,
        params=dict(config.train.params),
        seed=config.seed,
    )


def new_model(config: Config) -> Any:
    """The unfitted model from model/; its ValueError/TypeError (bad `train.estimator` or
    `train.params`, a missing optional package) become one clean PipelineError line."""
    try:
        return build_model(model_spec(config))
    except (ValueError, TypeError) as exc:
        raise PipelineError(str(exc)) from None


def features_and_target(config: Config, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The model's input columns (contract order) and the target."""
    target = frame[config.data.target]
    if config.task == "classification":
        target = target.astype(str)
    return frame[config.feature_columns], target


def train(config: Config, data: pd.DataFrame, ray_address: str | None = None) -> TrainResult:
    """Fit on the train split (the search's best candidate, refit on all of it, when
    `train.search` is set) and score on the test split. `ray_address`: run the parallel work
    on that Ray cluster instead of this machine."""
    from pipeline.cluster import backend

    train_frame, test_frame = split(config, data)
    x_train, y_train = features_and_target(config, train_frame)
    model = new_model(config)
    outcome = None
    started = time.perf_counter()
    with backend(ray_address):
        try:
            if config.train.search is None:
                model.fit(x_train, y_train)
            else:
                outcome = run_search(config, model, x_train, y_train)
                model = outcome.model
        except ValueError as exc:
            raise PipelineError(f"train: the estimator rejected the data: {exc}") from None
    fit_seconds = time.perf_counter() - started
    x_test, y_test = features_and_target(config, test_frame)
    metrics = score(config.task, model, x_test, y_test, config.positive_class)
    return TrainResult(model=model, train=train_frame, test=test_frame, metrics=metrics, fit_seconds=fit_seconds,
                       search=outcome)
