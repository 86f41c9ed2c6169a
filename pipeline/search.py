"""The hyperparameter search `train.search` asks for: scikit-learn's GridSearchCV or
RandomizedSearchCV (seeded) over the unfitted model from model/, scored with the template's own
metric, the best candidate refit on the whole training split.

model/ knows nothing about searching: the space names the estimator's parameters and is mapped
here onto the scikit-learn Pipeline's nested names. Where the trials run (this machine, or a Ray
cluster) is `pipeline.cluster`'s business; this module only asks it for a joblib backend, so the
same seed gives the same candidates, folds and scores on either.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config, SearchRange
from pipeline.errors import PipelineError, clip
from pipeline.metrics import metric_value, predict


@dataclass(frozen=True)
class Scorer:
    """The search metric as a scikit-learn scorer (higher is better for scikit-learn, so a
    lower-is-better metric is negated). Picklable: Ray ships it to the workers."""

    task: str
    metric: str
    positive_class: str | None
    sign: float

    def __call__(self, model: Any, features: pd.DataFrame, target: pd.Series) -> float:
        value = metric_value(predict(self.task, model, features, target, self.positive_class), self.metric)
        return float("nan") if value is None else self.sign * float(value)


@dataclass
class Trial:
    """One candidate: its params and cross-validated score (in the metric's own sign)."""

    params: dict[str, Any]
    mean: float
    std: float
    rank: int
    fit_seconds: float


@dataclass
class SearchOutcome:
    model: Any
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial]


def pipeline_names(model: Any, space: dict[str, Any]) -> dict[str, str]:
    """Each estimator parameter of the space -> its name in the fitted Pipeline (`estimator__x`,
    or deeper when model/ wraps the estimator); an unknown one fails naming the key."""
    known = model.get_params(deep=True)
    names, unknown = {}, []
    for name in space:
        matches = sorted((k for k in known if k.startswith("estimator__") and k.rsplit("__", 1)[-1] == name), key=len)
        if matches:
            names[name] = matches[0]
        else:
            unknown.append(name)
    if unknown:
        accepted = sorted({k.rsplit("__", 1)[-1] for k in known if k.startswith("estimator__")})
        raise PipelineError(f"train.search.space: {', '.join(map(repr, unknown))} is not a parameter of the estimator "
                            f"(it takes: {clip(', '.join(accepted), 400)})", config_key="train.search.space")
    return names


def _distribution(values: list[Any] | SearchRange) -> Any:
    from scipy import stats

    if isinstance(values, list):
        return values
    if values.integer:
        return stats.randint(int(values.low), int(values.high) + 1)
    if values.log:
        return stats.loguniform(values.low, values.high)
    return stats.uniform(values.low, values.high - values.low)


def build_search(config: Config, model: Any) -> Any:
    """The unfitted GridSearchCV/RandomizedSearchCV over `model` that `train.search` describes."""
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold

    search = config.train.search
    assert search is not None
    names = pipeline_names(model, search.space)
    space = {names[k]: _distribution(v) for k, v in search.space.items()}
    metric, direction = config.search_metric
    scorer = Scorer(config.task, metric, config.positive_class, -1.0 if direction == "lower" else 1.0)
    splitter = StratifiedKFold if config.task == "classification" else KFold
    cv = splitter(n_splits=search.folds, shuffle=True, random_state=config.seed)
    common: dict[str, Any] = {"scoring": scorer, "cv": cv, "refit": True, "error_score": np.nan, "n_jobs": -1}
    if search.method == "grid":
        return GridSearchCV(model, space, **common)
    return RandomizedSearchCV(model, space, n_iter=search.max_trials, random_state=config.seed, **common)


def run_search(config: Config, model: Any, features: pd.DataFrame, target: pd.Series) -> SearchOutcome:
    """Run the search (in the joblib backend that is active) and refit the best candidate.

    A failing candidate (scikit-learn scores it NaN and warns) fails the whole search, naming the
    candidate's params and its error: a search that quietly skipped part of its space would
    report a best that is not the best of what was asked.
    """
    search_config = config.train.search
    assert search_config is not None
    cv = build_search(config, model)
    names = pipeline_names(model, search_config.space)
    short = {long: name for name, long in names.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cv.fit(features, target)
        except ValueError as exc:
            if "fits failed" not in str(exc):
                raise PipelineError(f"train.search: the estimator rejected the data: {clip(str(exc), 400)}") from None
            first = _candidates(cv)[0]
            raise PipelineError(f"train.search: every trial failed, e.g. params {_shown(first, short)}: "
                                f"{_last_error(str(exc))}") from None
    results = cv.cv_results_
    failed = [i for i, score in enumerate(results["mean_test_score"]) if not np.isfinite(score)]
    if failed:
        errors = [str(w.message) for w in caught if "fits failed" in str(w.message)]
        detail = _last_error(errors[-1]) if errors else "it scored NaN"
        raise PipelineError(f"train.search: trial {failed[0] + 1} failed with params "
                            f"{_shown(results['params'][failed[0]], short)}: {detail}")
    sign = cv.scorer_.sign if isinstance(cv.scorer_, Scorer) else 1.0
    trials = [Trial(params=_shown(params, short), mean=float(sign * results["mean_test_score"][i]),
                    std=float(results["std_test_score"][i]), rank=int(results["rank_test_score"][i]),
                    fit_seconds=float(results["mean_fit_time"][i]))
              for i, params in enumerate(results["params"])]
    best = _shown(cv.best_params_, short)
    return SearchOutcome(model=cv.best_estimator_, best_params=best, best_score=float(sign * cv.best_score_), trials=trials)


def _shown(params: dict[str, Any], short: dict[str, str]) -> dict[str, Any]:
    """Params under the names mlops.yaml uses, as plain Python values (JSON, MLflow)."""
    return {short.get(k, k): v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


def _candidates(cv: Any) -> list[dict[str, Any]]:
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if hasattr(cv, "param_grid"):
        return list(ParameterGrid(cv.param_grid))
    return list(ParameterSampler(cv.param_distributions, n_iter=cv.n_iter, random_state=cv.random_state))


def _last_error(text: str) -> str:
    """The exception line of scikit-learn's failure summary (its last non-empty line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return clip(lines[-1] if lines else text, 300)
