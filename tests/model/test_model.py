"""model/: the estimator registry and the feature pipeline a forker edits."""

from __future__ import annotations

import pandas as pd
import pytest

from model import build_model
from model.estimator import ESTIMATORS, build_estimator
from model.features import split_feature_types
from pipeline.config import load_config
from pipeline.errors import PipelineError


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_registered_estimator_builds_for_both_tasks(name, task):
    estimator = build_estimator(task, name, {}, seed=7)
    assert hasattr(estimator, "fit")
    if "random_state" in estimator.get_params():
        assert estimator.get_params()["random_state"] == 7


def test_unknown_estimator_and_bad_parameter_name_the_key():
    with pytest.raises(PipelineError, match=r"train.estimator: unknown estimator 'xgb'"):
        build_estimator("classification", "xgb", {}, seed=0)
    with pytest.raises(PipelineError, match=r"train.params:.*n_trees"):
        build_estimator("classification", "random_forest", {"n_trees": 3}, seed=0)


def test_feature_pipeline_handles_missing_values_and_unseen_categories(make_config):
    config = load_config(make_config(lambda raw: raw["train"]["params"].update(n_estimators=10)))
    numeric, categorical = split_feature_types(config)
    assert "body_mass_g" in numeric and "species" in categorical
    data = pd.read_csv(config.root / config.data.path)
    model = build_model(config).fit(data[config.feature_columns], data[config.data.target])
    odd = data[config.feature_columns].head(2).copy()
    odd.loc[odd.index[0], "species"] = "Emperor"  # unseen in training
    odd.loc[odd.index[1], "culmen_length_mm"] = float("nan")
    assert list(model.predict(odd)) and set(model.predict(odd)) <= {"male", "female"}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize(("task", "target"), [("classification", "sex"), ("classification", "species"), ("regression",
                                                                                                         "body_mass_g")])
def test_declared_trusted_types_cover_what_skops_finds(make_config, name, task, target):
    """A missing type would make the saved model unloadable (skops refuses untrusted types)."""
    import skops.io as sio

    from model.estimator import TRUSTED_TYPES

    def variant(raw):
        raw.update(task=task)
        raw["data"].update(target=target)
        raw["data"]["positive_class"] = "Adelie" if target == "species" else None
        raw["validate"]["columns"][target]["feature"] = False
        raw["evaluate"] = {}  # the model tests name the bundled target's columns; not needed here
        raw["train"] = {"estimator": name, "params": {"max_iter": 20} if name == "hist_gradient_boosting" else {}}

    config = load_config(make_config(variant))
    data = pd.read_csv(config.root / config.data.path)
    y = data[target] if task == "regression" else data[target].astype(str)
    model = build_model(config).fit(data[config.feature_columns], y)
    assert set(sio.get_untrusted_types(data=sio.dumps(model))) <= set(TRUSTED_TYPES[name])
