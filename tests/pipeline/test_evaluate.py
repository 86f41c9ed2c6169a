"""The model tests: gates, champion comparison, slices, fairness and behaviour, on a real model."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.data import read_table, split
from pipeline.evaluate import evaluate
from pipeline.train import train


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
    assert outcome["fairness"]["column"] == "island" and set(outcome["fairness"]["rates"]) == {"Biscoe", "Dream", "Torgersen"}
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
    assert any(line.startswith("champion roc_auc: challenger regresses") for line in bad["failures"])


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


def test_slice_floor_and_fairness_limit_fail(trained):
    def strict(raw):
        raw["evaluate"]["slices"] = [{"column": "species", "metric": "accuracy", "min": 0.999}]
        raw["evaluate"]["fairness"]["max"] = 0.0

    config, _, result = trained(strict)
    outcome = evaluate(config, result.model, result.test)
    assert any(line.startswith("slice species=") for line in outcome["failures"])
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
    assert set(outcome["residuals"]["quantiles"]) == {"p5", "p25", "p50", "p75", "p95"}
    assert outcome["metrics"]["r2"] > 0.7
