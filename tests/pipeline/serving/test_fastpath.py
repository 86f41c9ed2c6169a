"""The NumPy fast path: exact agreement with scikit-learn, and a silent fallback for models it
does not know."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipeline.serving import fastpath, predictor


def test_fast_path_reproduces_scikit_learn(model_dir, contract) -> None:
    loaded = predictor.load(model_dir, contract)
    examples = predictor.warm_up_rows(model_dir, contract)
    assert loaded.enable_fast_path(examples)
    rows = fastpath.generated_rows(contract, 3000, seed=123) + examples
    assert np.array_equal(loaded.fast(rows), loaded._sklearn_values(rows))
    assert np.array_equal(loaded.fast.batch(rows), loaded._sklearn_values(rows))


def test_small_requests_take_the_fast_path_large_ones_scikit_learn(model_dir, contract) -> None:
    loaded = predictor.load(model_dir, contract)
    loaded.enable_fast_path(predictor.warm_up_rows(model_dir, contract))
    rows = fastpath.generated_rows(contract, predictor.FAST_PATH_MAX_ROWS + 1, seed=7)
    calls = []
    original = loaded.fast.forest.predict
    loaded.fast.forest.predict = lambda x: (calls.append(len(x)), original(x))[1]
    small, large = loaded.predict_rows(rows[:3]), loaded.predict_rows(rows)
    assert calls == [3]
    assert small.predictions == large.predictions[:3]


def test_unknown_estimator_falls_back(model_dir, contract, config) -> None:
    loaded = predictor.load(model_dir, contract)
    features = loaded.estimator.steps[0][1]
    data = pd.read_csv(config.root / config.data.path)
    linear = Pipeline([("features", features), ("estimator", LogisticRegression(max_iter=500))])
    linear.fit(data[config.feature_columns], data[config.data.target])
    other = predictor.Predictor(linear, contract, {})
    assert not other.enable_fast_path([])
    assert other.predict_rows(fastpath.generated_rows(contract, 2)).predictions
