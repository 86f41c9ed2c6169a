"""The model tests: gates, champion comparison, slices, fairness and behaviour, on a real model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.data import read_table, split
from pipeline.evaluate import compare, evaluate
from pipeline.metrics import Predictions
from pipeline.train import train
from tests.pipeline.generated import regression_config, regression_frame, write_project


def small(raw):
    raw["train"]["params"].update(n_estimators=30)


@pytest.fixture()
def trained(make_config):
    def fit(mutate=lambda raw: None):
        def both(raw):
            small(raw)
            mutate(raw)

        config = load_config(make_config(both))
        data = read_table(config.root / config.data.path, config)
        return config, data, train(config, data)

    return fit


def test_bundled_model_passes_every_check_without_champion(trained):
    config, _, result = trained()
    outcome = evaluate(config, result.model, result.test)
    assert outcome["passed"], outcome["failures"]
    assert outcome["champion"]["note"] == "no champion found: comparison passes"
    assert {g["metric"] for g in outcome["gates"]} == {"accuracy", "roc_auc", "f1"}
    assert outcome["fairness"]["column"] == "island" and set(outcome["fairness"]["groups"]) == {"Biscoe", "Dream", "Torgersen"}
    assert sum(sum(row) for row in outcome["confusion_matrix"]["matrix"]) == len(result.test)


def test_gate_above_reach_fails_and_names_the_metric(trained):
    config, _, result = trained(lambda raw: raw["evaluate"]["gates"].append({"metric": "accuracy", "threshold": 1.01}))
    outcome = evaluate(config, result.model, result.test)
    assert not outcome["passed"]
    assert any(line.startswith("gate accuracy:") for line in outcome["failures"])


def test_champion_comparison_fails_when_challenger_regresses(trained):
    config, data, strong = trained()
    _, _, weak = trained(lambda raw: raw["train"].update(estimator="linear", params={"C": 0.0005}))
    _, test = split(config, data)
    ok = evaluate(config, strong.model, test, champion=weak.model, champion_source="weak")
    assert ok["champion"]["passed"] and ok["champion"]["delta"] > 0
    bad = evaluate(config, weak.model, test, champion=strong.model, champion_source="strong")
    assert not bad["champion"]["passed"]
    assert any(line.startswith("champion roc_auc: challenger may be worse") for line in bad["failures"])


def test_behavioural_tests_catch_wrong_expectations(trained):
    def wrong(raw):
        behaviour = raw["evaluate"]["behaviour"]
        behaviour["directional"][0]["expect"] = "decrease"
        behaviour["invariance"][0]["max_change"] = 0.0
        behaviour["minimum"][0]["expect"] = "female"

    config, _, result = trained(wrong)
    outcome = evaluate(config, result.model, result.test)
    failed = {b["kind"] for b in outcome["behaviour"] if not b["passed"]}
    assert failed == {"directional", "invariance", "minimum"}
    assert not outcome["passed"]


class CountingModel:
    """The real fitted model, counting how often it is asked to score."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.classes_ = model.classes_

    def predict_proba(self, frame):
        self.calls += 1
        return self.model.predict_proba(frame)

    def predict(self, frame):
        self.calls += 1
        return self.model.predict(frame)


def test_behavioural_tests_score_in_two_calls_with_the_same_verdicts_as_one_call_each(trained):
    def several(raw):
        behaviour = raw["evaluate"]["behaviour"]
        behaviour["invariance"].append({"name": "species moves it", "column": "species",
                                        "values": ["Adelie", "Gentoo"], "max_change": 0.01})
        behaviour["directional"].append({"name": "lighter means female", "column": "body_mass_g", "delta": -600,
                                         "expect": "decrease", "min_rate": 0.8})

    from pipeline.behaviour import UNMOVED, model_score, run_behaviour
    from pipeline.train import features_and_target

    config, _, result = trained(several)
    features, _ = features_and_target(config, result.test)
    counting = CountingModel(result.model)
    outcome = run_behaviour(config, counting, features)
    assert counting.calls == 2  # the perturbed samples together, then the known rows together

    spec = config.evaluate.behaviour
    baseline = model_score(config, result.model, features)
    for test, got in zip(spec.invariance, outcome, strict=False):
        worst = 0.0
        for value in test.values:
            changed = features.copy()
            changed[test.column] = pd.Series([value] * len(changed), index=changed.index, dtype=features[test.column].dtype)
            worst = max(worst, float(np.max(np.abs(model_score(config, result.model, changed) - baseline))))
        assert got["detail"].startswith(f"largest change {worst:.3f}")
    for test, got in zip(spec.directional, outcome[len(spec.invariance):], strict=False):
        changed = features.copy()
        changed[test.column] = changed[test.column] + test.delta
        moved = model_score(config, result.model, changed) - baseline
        rate = float(np.mean(moved >= -UNMOVED if test.expect == "increase" else moved <= UNMOVED))
        assert got["detail"].startswith(f"{rate:.0%} of rows moved")
    assert [b["kind"] for b in outcome] == ["invariance", "invariance", "directional", "directional", "minimum", "minimum"]
    assert not outcome[1]["passed"] and outcome[0]["passed"]


def test_slice_floor_and_fairness_limit_fail(trained):
    def strict(raw):
        raw["evaluate"]["slices"] = [{"column": "species", "metric": "accuracy", "min": 0.999}]
        raw["evaluate"]["fairness"]["max"] = 0.0

    config, _, result = trained(strict)
    outcome = evaluate(config, result.model, result.test)
    assert any(line.startswith("slice species ") for line in outcome["failures"])
    assert any(line.startswith("fairness island:") for line in outcome["failures"])


def test_regression_task_reports_residuals(trained):
    def regression(raw):
        raw["task"] = "regression"
        raw["data"]["target"] = "body_mass_g"
        raw["data"].pop("positive_class")
        raw["validate"]["columns"]["sex"] = {"type": "category", "allowed": ["female", "male"]}
        raw["evaluate"] = {"gates": [{"metric": "r2", "threshold": 0.7}, {"metric": "rmse", "threshold": 500,
                                                                          "direction": "lower"}],
                           "behaviour": {"directional": [{"name": "longer flippers, heavier", "column": "flipper_length_mm",
                                                          "delta": 20, "expect": "increase", "min_rate": 0.6}]}}

    config, _, result = trained(regression)
    outcome = evaluate(config, result.model, result.test)
    assert outcome["passed"], outcome["failures"]
    quantiles = outcome["residuals"]["quantiles"]
    assert [q["name"] for q in quantiles] == ["p5", "p25", "p50", "p75", "p95"]
    assert [q["value"] for q in quantiles] == sorted(q["value"] for q in quantiles)
    assert outcome["metrics"]["r2"] > 0.7


# --- regression on par, on generated data (make_regression + a categorical column + missing values)

@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Fit a model on a generated regression project, with optional config edits."""
    def fit(mutate=lambda raw: None):
        config = load_config(write_project(tmp_path_factory.mktemp("gen"), regression_frame(), regression_config(), mutate))
        data = read_table(config.root / config.data.path, config)
        return config, train(config, data)

    return fit


def test_regression_fairness_is_the_largest_mae_gap_between_groups(generated):
    config, result = generated()
    outcome = evaluate(config, result.model, result.test)
    fair = outcome["fairness"]
    truth = result.test["y"].to_numpy()
    errors = pd.Series(np.abs(truth - result.model.predict(result.test)), index=result.test.index)
    by_region = errors.groupby(result.test["region"].astype(str)).mean()
    assert fair["metric"] == "mae" and fair["groups"] == pytest.approx(by_region.to_dict())
    assert fair["value"] == pytest.approx(by_region.max() - by_region.min()) and fair["passed"]
    assert "skipped" not in str(fair)

    config, result = generated(lambda raw: raw["evaluate"]["fairness"].update(max=0.0))
    outcome = evaluate(config, result.model, result.test)
    assert any(line.startswith("fairness region: largest mae gap between groups") for line in outcome["failures"])


def test_numeric_slices_are_quantile_or_bin_intervals_with_both_bounds(generated):
    def slices(raw):
        raw["evaluate"]["slices"] = [{"column": "x0", "metric": "mae", "max": 100, "quantiles": 4},
                                     {"column": "size", "metric": "rmse", "max": 100, "bins": [45, 55]}]

    config, result = generated(slices)
    outcome = evaluate(config, result.model, result.test)
    quartiles = [s for s in outcome["slices"] if s["column"] == "x0"]
    assert len(quartiles) == 4 and sum(s["rows"] for s in quartiles) == len(result.test)
    assert quartiles[0]["lower"] is None and quartiles[-1]["upper"] is None
    assert all(a["upper"] == b["lower"] for a, b in pairwise(quartiles))
    assert max(s["rows"] for s in quartiles) - min(s["rows"] for s in quartiles) <= 1
    by_bins = {s["value"]: s for s in outcome["slices"] if s["column"] == "size"}
    assert list(by_bins) == ["< 45", "[45, 55)", "≥ 55", "missing"]
    values = result.test["size"]
    assert by_bins["[45, 55)"]["rows"] == int(((values >= 45) & (values < 55)).sum())
    assert by_bins["missing"]["rows"] == int(values.isna().sum())
    assert all(s["metric"] == "rmse" and s["max"] == 100 for s in by_bins.values())


def test_champion_non_inferiority_on_models_known_better_equal_and_worse(generated):
    config, good = generated()
    _, crippled = generated(lambda raw: raw["train"]["params"].update(max_iter=3, learning_rate=0.05))
    same = evaluate(config, good.model, good.test, champion=good.model, champion_source="itself")["champion"]
    assert same["passed"] and same["delta"] == 0.0 and same["interval"] == [0.0, 0.0]
    better = evaluate(config, good.model, good.test, champion=crippled.model, champion_source="crippled")["champion"]
    assert better["passed"] and better["interval"][1] < 0  # mae: the whole interval says "lower error"
    worse = evaluate(config, crippled.model, good.test, champion=good.model, champion_source="good")
    assert not worse["champion"]["passed"] and worse["champion"]["interval"][0] > config.evaluate.champion.tolerance
    assert any(line.startswith("champion mae: challenger may be worse") and "95% interval" in line
               for line in worse["failures"])


def test_a_difference_inside_the_tolerance_that_could_be_noise_does_not_pass(generated):
    """Two equally noisy models on 100 rows: the point estimate (+1.6 mae) is inside the
    tolerance (5), but the interval reaches +6.8, so non-inferiority is not shown."""
    config, _ = generated()
    rng = np.random.default_rng(1)
    truth = rng.normal(200, 80, 100)
    challenger = Predictions("regression", truth, truth + rng.normal(0, 30, 100))
    champion = Predictions("regression", truth, truth + rng.normal(0, 30, 100))
    result = compare(config, challenger, champion, "synthetic")
    assert 0 < result["delta"] < config.evaluate.champion.tolerance
    assert result["interval"][1] > config.evaluate.champion.tolerance and not result["passed"]
    assert result["resamples"] == 1000 and result["rows"] == 100 and result["confidence"] == 0.95
