"""What a forker edits: the features and the estimator (spots marked `FORK:`).

`build_model(config)` is the whole interface the pipeline sees: it returns an unfitted
scikit-learn Pipeline that takes the raw feature columns of the data contract. The serving app
in `model/serving/` loads the fitted pipeline and shares the same contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from pipeline.config import Config


def build_model(config: "Config") -> "Pipeline":
    """Features followed by the configured estimator, unfitted."""
    from sklearn.pipeline import Pipeline

    from model.estimator import build_estimator
    from model.features import build_features

    return Pipeline(
        [
            ("features", build_features(config)),
            ("estimator", build_estimator(config.task, config.train.estimator, config.train.params, config.seed)),
        ]
    )
