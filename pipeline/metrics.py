"""Model metrics by task, computed the same way for challenger, champion and slices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

CLASSIFICATION = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("rmse", "mae", "r2", "mape")
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "mape"}


def positive_scores(model: Any, features: pd.DataFrame, positive_class: str) -> np.ndarray:
    """Probability of the positive class, the score behavioural tests and AUC use."""
    proba = model.predict_proba(features)
    classes = list(model.classes_)
    return proba[:, classes.index(positive_class)] if positive_class in classes else np.zeros(len(features))


def score(task: str, model: Any, features: pd.DataFrame, target: pd.Series, positive_class: str | None) -> dict[str, float]:
    """Every metric of the task on one data set."""
    predicted = model.predict(features)
    if task == "regression":
        return regression_metrics(target.to_numpy(dtype=float), np.asarray(predicted, dtype=float))
    proba = model.predict_proba(features)
    return classification_metrics(target.astype(str).to_numpy(), np.asarray(predicted).astype(str), proba, [str(c) for c in model.classes_], positive_class)


def classification_metrics(
    truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray, classes: list[str], positive_class: str | None
) -> dict[str, float]:
    binary = len(classes) == 2 and positive_class in classes
    average = "binary" if binary else "macro"
    extra = {"pos_label": positive_class} if binary else {}
    out = {
        "accuracy": skm.accuracy_score(truth, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, predicted),
        "precision": skm.precision_score(truth, predicted, average=average, zero_division=0, **extra),
        "recall": skm.recall_score(truth, predicted, average=average, zero_division=0, **extra),
        "f1": skm.f1_score(truth, predicted, average=average, zero_division=0, **extra),
    }
    if len(set(truth)) > 1:
        if binary:
            out["roc_auc"] = skm.roc_auc_score(truth == positive_class, proba[:, classes.index(positive_class)])
        else:
            out["roc_auc"] = skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
        out["log_loss"] = skm.log_loss(truth, proba, labels=classes)
    return {k: float(v) for k, v in out.items()}


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(truth, predicted))),
        "mae": float(skm.mean_absolute_error(truth, predicted)),
        "r2": float(skm.r2_score(truth, predicted)) if len(truth) > 1 else float("nan"),
        "mape": float(skm.mean_absolute_percentage_error(truth, predicted)),
    }


def is_better_or_equal(value: float, threshold: float, direction: str) -> bool:
    return value >= threshold if direction == "higher" else value <= threshold
