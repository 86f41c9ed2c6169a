"""Metrics: the single-metric path the bootstrap uses equals the full computation, and the
paired bootstrap gives an interval that contains zero for a model against itself."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import METRICS
from pipeline.metrics import Predictions, chart_groups, metric_value, metrics_of, paired_bootstrap


def binary(rows: int = 120, seed: int = 3) -> Predictions:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, rows)
    score = np.clip(truth * 0.35 + rng.random(rows) * 0.65, 0, 1).round(2)  # ties on purpose
    proba = np.column_stack([1 - score, score])
    return Predictions("classification", truth, proba.argmax(axis=1), proba, ("no", "yes"), 1)


def regression(rows: int = 120, seed: int = 3, noise: float = 10.0) -> Predictions:
    rng = np.random.default_rng(seed)
    truth = rng.normal(100, 30, rows)
    return Predictions("regression", truth, truth + rng.normal(0, noise, rows))


@pytest.mark.parametrize("make", [binary, regression])
def test_each_metric_alone_equals_the_full_computation(make) -> None:
    p = make()
    full = metrics_of(p)
    for name in METRICS[p.task]:
        assert metric_value(p, name) == pytest.approx(full[name], rel=1e-9, abs=1e-12), name


def test_multiclass_metrics_fall_back_to_the_full_computation() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], 60)
    p = Predictions("classification", rng.integers(0, 3, 60), proba.argmax(axis=1), proba, ("a", "b", "c"), None)
    assert metric_value(p, "f1") == pytest.approx(metrics_of(p)["f1"])


def test_a_model_against_itself_has_a_zero_width_interval() -> None:
    p = regression()
    boot = paired_bootstrap(p, p, "mae", resamples=200, confidence=0.95, seed=1)
    assert boot["interval"] == [0.0, 0.0] and boot["rows"] == 120 and boot["resamples"] == 200


def test_bootstrap_is_seeded_and_its_interval_holds_the_observed_difference() -> None:
    good, bad = regression(noise=5.0), regression(noise=5.0)
    bad = Predictions("regression", good.truth, good.truth + (bad.predicted - bad.truth) * 3)
    first = paired_bootstrap(good, bad, "mae", resamples=300, confidence=0.9, seed=5)
    assert first == paired_bootstrap(good, bad, "mae", resamples=300, confidence=0.9, seed=5)
    low, high = first["interval"]
    observed = metric_value(good, "mae") - metric_value(bad, "mae")
    assert low < observed < high < 0  # the good model's error is lower, and the interval says so


def test_chart_groups_never_mix_direction_or_scale() -> None:
    groups = dict(chart_groups(list(METRICS["regression"]) + list(METRICS["classification"])))
    assert groups["higher is better, 1 is perfect"] == ["accuracy", "balanced_accuracy", "precision", "recall", "f1",
                                                         "roc_auc", "r2"]
    assert groups["lower is better, in target units"] == ["rmse", "mae"]
    assert groups["lower is better, log loss"] == ["log_loss"]


def test_resampled_roc_auc_by_weights_equals_scoring_the_resampled_rows() -> None:
    from pipeline.metrics import _auc_of_weights

    p = binary()  # tied scores included
    picked = np.random.default_rng(9).integers(0, 120, 120)
    weights = np.bincount(picked, minlength=120).astype(float)
    assert _auc_of_weights(p)(weights) == pytest.approx(metric_value(p.subset(picked), "roc_auc"), rel=1e-12)
