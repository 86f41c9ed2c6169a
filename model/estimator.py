"""The estimators `train.estimator` may name in mlops.yaml, per task.

FORK: register your own estimator here (any scikit-learn compatible class); its parameters come
from `train.params`. Classifiers must implement predict_proba.
"""

from __future__ import annotations

from typing import Any, Callable

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from pipeline.errors import PipelineError

ESTIMATORS: dict[str, dict[str, Callable[..., BaseEstimator]]] = {  # FORK: add yours
    "random_forest": {"classification": RandomForestClassifier, "regression": RandomForestRegressor},
    "hist_gradient_boosting": {
        "classification": HistGradientBoostingClassifier,
        "regression": HistGradientBoostingRegressor,
    },
    "linear": {"classification": LogisticRegression, "regression": Ridge},
}

# The types skops must trust to load each fitted estimator (saving never runs pickle). FORK: add
# yours; leave an estimator out and the pipeline finds them by serialising once more.
TRUSTED_TYPES: dict[str, list[str]] = {
    "random_forest": ["numpy.dtype", "sklearn.tree._tree.Tree"],
    "hist_gradient_boosting": [
        "numpy.dtype",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    ],
    "linear": ["numpy.dtype"],
}

# Defaults applied unless train.params sets them (all cores for the forest).
DEFAULTS: dict[str, dict[str, Any]] = {"random_forest": {"n_jobs": -1}}
SEEDED = ("random_state",)


def build_estimator(task: str, name: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    """Instantiate `name` for `task`; unknown names or parameters fail naming the key."""
    if name not in ESTIMATORS:
        raise PipelineError(f"train.estimator: unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
    factory = ESTIMATORS[name].get(task)
    if factory is None:
        raise PipelineError(f"train.estimator: {name!r} does not support task {task!r}")
    try:
        estimator = factory(**{**DEFAULTS.get(name, {}), **params})
    except TypeError as exc:
        raise PipelineError(f"train.params: {exc}") from None
    accepted = estimator.get_params()
    for key in SEEDED:
        if key in accepted and key not in params:
            estimator.set_params(**{key: seed})
    return estimator
