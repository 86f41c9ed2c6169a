"""mlops.yaml is parsed once; every mistake fails at start-up naming the key or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]


def test_bundled_config_loads_with_derived_features():
    config = load_config(REPO / "mlops.yaml")
    assert config.task == "classification"
    assert config.data.target not in config.feature_columns
    assert "sample_id" not in config.feature_columns and "year" not in config.feature_columns
    assert config.positive_class == "male"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["train"].update(estimatr="x"), "train.estimatr: unknown key"),
        (lambda c: c.update(tsk="classification"), "tsk: unknown key"),
        (lambda c: c["validate"]["columns"]["species"].update(allowd=["a"]), "validate.columns.species.allowd: unknown key"),
        (lambda c: c["data"].update(test_size="a lot"), "data.test_size"),
        (lambda c: c.update(task="clustering"), "task"),
        (lambda c: c["evaluate"]["gates"][0].update(direction="up"), "evaluate.gates.0.direction"),
        (lambda c: c["data"].pop("target"), "data.target: required key is missing"),
        (lambda c: c["data"].update(path="data/nope.csv"), "data.path: file not found: data/nope.csv"),
        (lambda c: c["data"].update(target="weight"), "data.target 'weight' is not declared"),
        (lambda c: c["evaluate"]["slices"][0].update(column="specie"), "evaluate.slices.0.column: 'specie' is not declared"),
        (lambda c: c["evaluate"]["fairness"].update(column="islnd"), "evaluate.fairness.column: 'islnd' is not declared"),
        (lambda c: c["evaluate"]["gates"][0].update(metric="f2"), "evaluate.gates.0.metric: unknown metric 'f2'"),
        (lambda c: c["evaluate"]["champion"].update(metric="rmse"), "evaluate.champion.metric: unknown metric 'rmse'"),
        (lambda c: c["data"].update(positive_class="Male"), "data.positive_class 'Male' is not one of"),
        (lambda c: c["evaluate"]["behaviour"]["directional"][0].update(column="body_mass"),
         "evaluate.behaviour.directional.0.column: 'body_mass'"),
        (lambda c: c["evaluate"]["behaviour"]["invariance"][0].update(values=["Mars"]),
         "evaluate.behaviour.invariance.0.values: ['Mars']"),
        (lambda c: c["evaluate"]["behaviour"]["minimum"][0]["row"].update(body_mass=5000),
         "evaluate.behaviour.minimum.0.row: ['body_mass']"),
        (lambda c: c.update(task="regression"), "task regression needs a numeric target"),
        (lambda c: c["evaluate"]["behaviour"]["minimum"][0]["row"].pop("delta_13c"),
         "evaluate.behaviour.minimum.0.row: missing feature(s) ['delta_13c']"),
        (lambda c: c["evaluate"]["behaviour"]["minimum"][1].update(expect="Female"),
         "evaluate.behaviour.minimum.1.expect: 'Female' is not one of the target's allowed values"),
        (lambda c: c["evaluate"]["slices"].append({"column": "body_mass_g", "metric": "accuracy", "min": 0.7}),
         "evaluate.slices.2: column 'body_mass_g' is numeric: set bins: [cut points] or quantiles: N"),
        (lambda c: c["evaluate"]["slices"][0].update(quantiles=4), "evaluate.slices.0: bins and quantiles are for numeric"),
        (lambda c: c["evaluate"]["slices"].append({"column": "year", "metric": "f1", "min": 0.7, "bins": [2008],
                                                   "quantiles": 3}), "set bins or quantiles, not both"),
        (lambda c: c["evaluate"]["slices"][0].pop("min"), "evaluate.slices.0: set min or max"),
        (lambda c: c["evaluate"]["fairness"].update(metric="mae"), "evaluate.fairness.metric: unknown metric 'mae'"),
        (lambda c: c["evaluate"]["fairness"].update(max=1.5), "evaluate.fairness.max: 1.5 is above 1"),
    ],
)
def test_config_mistakes_name_the_key(make_config, mutate, expected):
    path = make_config(mutate)
    with pytest.raises(PipelineError) as caught:
        load_config(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(PipelineError, match=r"nowhere.yaml: config file not found"):
        load_config(tmp_path / "nowhere.yaml")


def test_regression_task_needs_no_positive_class(make_config):
    def to_regression(c):
        c["task"] = "regression"
        c["data"]["target"] = "body_mass_g"
        c["data"].pop("positive_class")
        c["evaluate"] = {"gates": [{"metric": "rmse", "threshold": 400, "direction": "lower"}]}

    config = load_config(make_config(to_regression))
    assert config.positive_class is None
    assert "body_mass_g" not in config.feature_columns


def test_a_leftover_positive_class_in_a_regression_config_is_refused(make_config):
    def to_regression(c):
        c["task"] = "regression"
        c["data"]["target"] = "body_mass_g"
        c["evaluate"] = {"gates": [{"metric": "rmse", "threshold": 400, "direction": "lower"}]}

    with pytest.raises(PipelineError) as caught:
        load_config(make_config(to_regression))
    assert str(caught.value).endswith("mlops.yaml: data.positive_class: only for classification; remove it for task regression")


def test_config_errors_read_as_key_and_message_without_pydantic_noise(make_config):
    def two_mistakes(c):
        c["evaluate"]["gates"][0]["metric"] = "f2"
        c["evaluate"]["slices"][0]["column"] = "specie"

    path = make_config(two_mistakes)
    with pytest.raises(PipelineError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}: evaluate.gates.0.metric: unknown metric 'f2' for classification (known: accuracy, balanced_accuracy, "
        "precision, recall, f1, roc_auc, log_loss)",
        f"{path}: evaluate.slices.0.column: 'specie' is not declared in validate.columns",
    ]


def regression(fairness=None, minimum=None):
    """The bundled config turned into a regression on body_mass_g, with the given model tests."""
    def mutate(c):
        c["task"] = "regression"
        c["data"]["target"] = "body_mass_g"
        c["data"].pop("positive_class")
        c["validate"]["columns"]["sex"] = {"type": "category", "allowed": ["female", "male"]}
        c["evaluate"] = {"gates": [{"metric": "rmse", "threshold": 400, "direction": "lower"}]}
        if fairness is not None:
            c["evaluate"]["fairness"] = fairness
        if minimum is not None:
            c["evaluate"]["behaviour"] = {"minimum": [minimum]}

    return mutate


def test_regression_fairness_needs_an_error_metric_not_a_skip(make_config):
    """demographic parity (the default) has no meaning for a regression: a config error, never
    a green "skipped"; an error metric's gap between groups is accepted."""
    with pytest.raises(PipelineError, match=r"evaluate.fairness.metric: demographic_parity_difference needs classes; "
                                            r"for regression choose a metric .*\(rmse, mae, r2, mape\)"):
        load_config(make_config(regression(fairness={"column": "island", "max": 0.5})))
    config = load_config(make_config(regression(fairness={"column": "island", "metric": "mae", "max": 150})))
    assert config.evaluate.fairness is not None and config.evaluate.fairness.max == 150


def test_regression_known_answer_must_be_a_number(make_config):
    row = {"species": "Gentoo", "island": "Biscoe", "clutch_completion": "yes", "culmen_length_mm": 50.5,
           "culmen_depth_mm": 16.0, "flipper_length_mm": 228, "delta_15n": 8.3, "delta_13c": -26.1, "sex": "male"}
    with pytest.raises(PipelineError, match=r"evaluate.behaviour.minimum.0.expect: 'heavy' is not a number"):
        load_config(make_config(regression(minimum={"name": "big", "row": row, "expect": "heavy"})))
    config = load_config(make_config(regression(minimum={"name": "big", "row": {**row, "delta_13c": None}, "expect": 5500,
                                                         "tolerance": 400})))
    assert config.evaluate.behaviour.minimum[0].row["delta_13c"] is None
