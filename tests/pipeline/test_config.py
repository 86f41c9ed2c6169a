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
