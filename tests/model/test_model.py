"""model/: the spec, the estimator records and the feature pipeline a forker edits."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from model import ModelSpec, build_model, requirements, trusted_types
from model.estimator import ESTIMATORS, Estimator, build_estimator

REPO = Path(__file__).resolve().parents[2]
PENGUINS = REPO / "data" / "penguins.csv"
NUMERIC = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")


def spec(estimator: str = "random_forest", task: str = "classification", **params) -> ModelSpec:
    return ModelSpec(task=task, numeric=NUMERIC, categorical=("species", "island"), estimator=estimator, params=params, seed=7)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_registered_estimator_builds_for_both_tasks(name, task):
    estimator = build_estimator(spec(name, task))
    assert hasattr(estimator, "fit")
    if "random_state" in estimator.get_params():
        assert estimator.get_params()["random_state"] == 7


def test_unknown_estimator_unknown_parameter_and_bad_task_name_the_key():
    with pytest.raises(ValueError, match=r"train.estimator: unknown estimator 'xgb'; known: hist_gradient_boosting, lightgbm"):
        build_model(spec("xgb"))
    with pytest.raises(TypeError, match=r"train.params: .*'n_trees'"):
        build_model(spec("random_forest", n_trees=3))
    with pytest.raises(ValueError, match="task: 'ranking' is not one of classification, regression"):
        spec(task="ranking")


def test_an_estimator_without_the_task_says_so(monkeypatch):
    only = Estimator(factories={"classification": "sklearn.linear_model:LogisticRegression"})
    monkeypatch.setitem(ESTIMATORS, "only_classes", only)
    with pytest.raises(ValueError, match=r"train\.estimator: 'only_classes' does not support task 'regression'"):
        build_model(spec("only_classes", "regression"))


def test_missing_optional_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # as if lightgbm were not installed
    with pytest.raises(ValueError) as raised:
        build_model(spec("lightgbm"))
    assert str(raised.value) == "train.estimator: 'lightgbm' needs the package lightgbm: pip install -e '.[lightgbm]'"


def test_a_record_whose_module_is_absent_and_has_no_extra(monkeypatch):
    absent = Estimator(factories={"classification": "no_such_module_here:Model"}, requirements=("no-such-package",))
    monkeypatch.setitem(ESTIMATORS, "absent", absent)
    with pytest.raises(ValueError, match=r"'absent' needs the package no-such-package: pip install no-such-package$"):
        build_model(spec("absent"))


def test_a_callable_factory_and_defaults_under_params(monkeypatch):
    from sklearn.linear_model import LogisticRegression

    record = Estimator(factories={"classification": LogisticRegression}, defaults={"C": 0.5, "max_iter": 50})
    monkeypatch.setitem(ESTIMATORS, "mine", record)
    built = build_estimator(spec("mine", C=2.0))
    assert (built.C, built.max_iter, built.random_state) == (2.0, 50, 7)


def test_requirements_and_trusted_types_of_the_built_ins():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("random_forest", "hist_gradient_boosting", "linear"):
        assert requirements(spec(name)) == []  # the base runtime has all scikit-learn needs
    assert requirements(spec("lightgbm")) == ["lightgbm"]
    for name, record in ESTIMATORS.items():  # every extra a record names exists and installs its packages
        if record.requirements:
            extra = {line.split(">")[0].split("=")[0].split("[")[0] for line in declared[record.extra]}
            assert set(record.requirements) <= extra, name
    assert trusted_types(spec("random_forest")) == ["numpy.dtype", "sklearn.tree._tree.Tree"]
    assert trusted_types(spec("linear")) == ["numpy.dtype"]
    assert "lightgbm.basic.Booster" in trusted_types(spec("lightgbm"))


def test_feature_pipeline_handles_missing_values_and_unseen_categories():
    data = pd.read_csv(PENGUINS)
    model = build_model(spec("random_forest", n_estimators=10))
    model.fit(data[[*NUMERIC, "species", "island"]], data["sex"].astype(str))
    odd = data[[*NUMERIC, "species", "island"]].head(2).copy()
    odd.loc[odd.index[0], "species"] = "Emperor"  # unseen in training
    odd.loc[odd.index[1], "culmen_length_mm"] = float("nan")
    assert set(model.predict(odd)) <= {"male", "female"}


SMALL = {"hist_gradient_boosting": {"max_iter": 20}, "lightgbm": {"n_estimators": 20}, "random_forest": {"n_estimators": 10},
         "xgboost": {"n_estimators": 20}}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize(("task", "target"),
                         [("classification", "sex"), ("classification", "species"), ("regression", "body_mass_g")])
def test_declared_trusted_types_cover_what_skops_finds_and_load_back(name, task, target):
    """A missing type would make the saved model unloadable (skops refuses untrusted types)."""
    import numpy as np
    import skops.io as sio

    data = pd.read_csv(PENGUINS)
    columns = [c for c in (*NUMERIC, "species", "island", "sex") if c != target]
    numeric = tuple(c for c in NUMERIC if c != target)
    categorical = tuple(c for c in ("species", "island", "sex") if c != target)
    model_spec = ModelSpec(task=task, numeric=numeric, categorical=categorical, estimator=name, params=SMALL.get(name, {}))
    y = data[target] if task == "regression" else data[target].astype(str)
    model = build_model(model_spec).fit(data[columns], y)
    declared = trusted_types(model_spec)
    dumped = sio.dumps(model)
    assert set(sio.get_untrusted_types(data=dumped)) <= set(declared)
    loaded = sio.loads(dumped, trusted=declared)
    assert np.array_equal(loaded.predict(data[columns]), model.predict(data[columns]))


def test_xgboost_answers_in_the_original_string_labels():
    """XGBoost takes class codes only; the model encodes and decodes them itself."""
    data = pd.read_csv(PENGUINS).dropna(subset=["sex"])
    model = build_model(spec("xgboost", n_estimators=20)).fit(data[[*NUMERIC, "species", "island"]], data["sex"])
    assert list(model.classes_) == ["female", "male"]
    assert set(model.predict(data[[*NUMERIC, "species", "island"]])) == {"female", "male"}
    assert model.predict_proba(data[[*NUMERIC, "species", "island"]].head(2)).shape == (2, 2)
    assert requirements(spec("xgboost")) == ["xgboost-cpu"]
