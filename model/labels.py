"""String class labels for estimators that only take integer codes (XGBoost).

`EncodedLabels` fits the wrapped classifier on codes 0..k-1 and answers in the original labels, so
the pipeline, the saved model and the server see "female"/"male" like any other classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

# skops must trust this class to load a model that contains it (declared by the records using it).
TRUSTED_TYPES = ("model.labels.EncodedLabels",)


class EncodedLabels(ClassifierMixin, BaseEstimator):
    """A classifier fitted on label codes that predicts the original labels (`classes_`, sorted)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> EncodedLabels:
        classes, codes = np.unique(np.asarray(y).astype(str), return_inverse=True)
        self.classes_ = classes
        self.estimator_ = clone(self.estimator).fit(X, codes, **fit_params)
        return self

    @property
    def n_features_in_(self) -> int:
        """The wrapped classifier's input width (the ONNX conversion reads it)."""
        return int(self.estimator_.n_features_in_)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.asarray(self.estimator_.predict(X)).astype(np.int64)]

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator_.predict_proba(X))
