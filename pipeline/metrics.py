"""Model metrics by task, computed the same way for challenger, champion and slices.

A model is run once per data set (`predict`), and every metric, slice, fairness rate and the
confusion matrix read the same arrays: at 1M rows each extra prediction pass costs seconds.
Class labels become integer codes before scoring, which is much faster than comparing strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from pipeline.config import METRICS

CLASSIFICATION = METRICS["classification"]
REGRESSION = METRICS["regression"]
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "mape"}


@dataclass(frozen=True)
class Predictions:
    """One model's outputs on one data set, with the truth, ready for any metric."""

    task: str
    truth: np.ndarray  # class codes (classification) or float values
    predicted: np.ndarray  # class codes or float values
    proba: np.ndarray | None = None  # (rows, classes) for classification
    classes: tuple[str, ...] = ()
    positive: int | None = None  # code of the positive class

    def subset(self, rows: np.ndarray) -> Predictions:
        proba = None if self.proba is None else self.proba[rows]
        return Predictions(self.task, self.truth[rows], self.predicted[rows], proba, self.classes, self.positive)

    def labels(self) -> np.ndarray:
        """Predicted class names (classification) or values."""
        return np.asarray(self.classes, dtype=object)[self.predicted] if self.classes else self.predicted


def predict(task: str, model: Any, features: pd.DataFrame, target: pd.Series, positive_class: str | None) -> Predictions:
    """Run the model once on `features`."""
    if task == "regression":
        return Predictions(task, target.to_numpy(dtype=float), np.asarray(model.predict(features), dtype=float))
    classes = tuple(str(c) for c in model.classes_)
    proba = np.asarray(model.predict_proba(features), dtype=float)
    truth = pd.Categorical(target.astype(str), categories=list(classes)).codes.astype(np.int64)
    positive = classes.index(positive_class) if positive_class in classes else None
    return Predictions(task, truth, proba.argmax(axis=1), proba, classes, positive)


def metrics_of(p: Predictions) -> dict[str, float]:
    """Every metric of the task from one set of predictions."""
    if p.task == "regression":
        return regression_metrics(p.truth, p.predicted)
    return classification_metrics(p)


def score(task: str, model: Any, features: pd.DataFrame, target: pd.Series, positive_class: str | None) -> dict[str, float]:
    """Predict and score in one call (training-time metrics)."""
    return metrics_of(predict(task, model, features, target, positive_class))


def classification_metrics(p: Predictions) -> dict[str, float]:
    truth, predicted = p.truth, p.predicted
    known = truth >= 0  # a class unseen in training has code -1: it counts as wrong, not as a label
    labels = list(range(len(p.classes)))
    binary = len(p.classes) == 2 and p.positive is not None
    extra: dict[str, Any] = {"pos_label": p.positive, "average": "binary"} if binary else {"average": "macro", "labels": labels}
    out = {
        "accuracy": float(np.mean(truth == predicted)) if len(truth) else float("nan"),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, predicted),
        "precision": skm.precision_score(truth, predicted, zero_division=0, **extra),
        "recall": skm.recall_score(truth, predicted, zero_division=0, **extra),
        "f1": skm.f1_score(truth, predicted, zero_division=0, **extra),
    }
    if len(np.unique(truth[known])) > 1 and p.proba is not None:
        if binary:
            out["roc_auc"] = skm.roc_auc_score(truth[known] == p.positive, p.proba[known, p.positive])
        else:
            out["roc_auc"] = skm.roc_auc_score(truth[known], p.proba[known], multi_class="ovr", labels=labels)
        out["log_loss"] = skm.log_loss(truth[known], p.proba[known], labels=labels)
    return {k: float(v) for k, v in out.items()}


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(truth, predicted))),
        "mae": float(skm.mean_absolute_error(truth, predicted)),
        "r2": float(skm.r2_score(truth, predicted)) if len(truth) > 1 else float("nan"),
        "mape": float(skm.mean_absolute_percentage_error(truth, predicted)),
    }


def confusion(p: Predictions) -> dict[str, Any]:
    """Confusion matrix over the model's classes (rows: actual, columns: predicted)."""
    size = len(p.classes)
    known = p.truth >= 0
    matrix = np.bincount(p.truth[known] * size + p.predicted[known], minlength=size * size).reshape(size, size)
    return {"labels": list(p.classes), "matrix": matrix.tolist()}


def is_better_or_equal(value: float, threshold: float, direction: str) -> bool:
    return value >= threshold if direction == "higher" else value <= threshold
