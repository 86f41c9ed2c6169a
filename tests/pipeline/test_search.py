"""`train.search`: a grid or random search over the estimator's params, on generated projects
(classification and regression). The best params are refit and are the model's, every trial is
a child run of the train run in MLflow, the report shows them, and a bad space fails at start-up
naming the key, with nothing trained or registered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from tests.pipeline.generated import (
    classification_config,
    classification_frame,
    regression_config,
    regression_frame,
    write_project,
)

Raw = dict[str, Any]


def project(tmp_path: Path, task: str, search: dict[str, Any], edit: Callable[[Raw], None] = lambda raw: None) -> Path:
    frame, raw = ((classification_frame(), classification_config()) if task == "classification"
                  else (regression_frame(), regression_config()))

    def mutate(raw: Raw) -> None:
        raw["train"]["search"] = search
        edit(raw)

    return write_project(tmp_path, frame, raw, mutate)


def cli(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--config", str(config), *args])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def child_runs(config: Path, run_id: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{config.parent / '.mlops' / 'mlflow.db'}")
    experiment = client.get_run(run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000)


def test_grid_search_classification_refits_the_best_and_logs_every_trial(tmp_path: Path, capsys) -> None:
    config = project(tmp_path, "classification",
                     {"method": "grid", "space": {"max_depth": [2, 6], "min_samples_leaf": [1, 8]}, "folds": 3})
    code, text = cli(config, "run", capsys=capsys)
    assert code == 0, text
    train = json.loads((tmp_path / "outputs" / "train.json").read_text())
    search = train["search"]
    assert (search["method"], search["metric"], search["direction"], search["folds"]) == ("grid", "roc_auc", "higher", 3)
    assert len(search["trials"]) == 4
    best = min(search["trials"], key=lambda t: t["rank"])
    assert best["params"] == search["best_params"] and best["mean"] == max(t["mean"] for t in search["trials"])
    assert {t["params"]["max_depth"] for t in search["trials"]} == {2, 6}
    # the model is the best candidate, refit on the whole training split
    from pipeline.tracking import load_model

    estimator = load_model(str(tmp_path / "outputs" / "model")).named_steps["estimator"]
    assert estimator.max_depth == search["best_params"]["max_depth"]
    assert estimator.min_samples_leaf == search["best_params"]["min_samples_leaf"]
    assert train["params"]["max_depth"] == search["best_params"]["max_depth"]
    children = child_runs(config, train["run_id"])
    assert len(children) == 4
    assert sorted(int(c.data.params["max_depth"]) for c in children) == [2, 2, 6, 6]
    assert {round(c.data.metrics["cv_mean"], 9) for c in children} == {round(t["mean"], 9) for t in search["trials"]}
    report = (tmp_path / "outputs" / "report.md").read_text()
    assert "Hyperparameter search (grid): 4 trials" in report
    assert f"`max_depth` = `{search['best_params']['max_depth']}`" in report


def test_random_search_regression_is_seeded_and_lower_is_better(tmp_path: Path, capsys) -> None:
    space = {"learning_rate": {"low": 0.02, "high": 0.3, "log": True}, "max_leaf_nodes": {"low": 4, "high": 31, "integer": True},
             "l2_regularization": [0.0, 1.0]}
    config = project(tmp_path, "regression", {"method": "random", "space": space, "max_trials": 4, "folds": 2,
                                              "metric": "rmse"})
    code, text = cli(config, "validate", capsys=capsys)
    assert code == 0, text
    code, text = cli(config, "train", capsys=capsys)
    assert code == 0, text
    first = json.loads((tmp_path / "outputs" / "train.json").read_text())
    search = first["search"]
    assert (search["metric"], search["direction"], len(search["trials"])) == ("rmse", "lower", 4)
    assert search["best_score"] == min(t["mean"] for t in search["trials"])  # rmse itself, not its negation
    assert all(0.02 <= t["params"]["learning_rate"] <= 0.3 and 4 <= t["params"]["max_leaf_nodes"] <= 31
               for t in search["trials"])
    # the same seed samples the same candidates and picks the same best
    code, text = cli(config, "train", capsys=capsys)
    assert code == 0, text
    again = json.loads((tmp_path / "outputs" / "train.json").read_text())["search"]
    assert [t["params"] for t in again["trials"]] == [t["params"] for t in search["trials"]]
    assert again["best_params"] == search["best_params"]


@pytest.mark.parametrize(("search", "expected"), [
    ({"space": {"max_dept": [2, 4]}}, "train.search.space: 'max_dept' is not a parameter of the estimator"),
    ({"space": {}}, "train.search.space: empty"),
    ({"space": {"max_depth": []}}, "train.search.space.max_depth: no values"),
    ({"space": {"max_depth": {"low": 2, "high": 8}}}, "train.search.space.max_depth: a range needs method: random"),
    ({"space": {"max_depth": [2, 3, 4]}, "max_trials": 2},
     "train.search.space: the grid has 3 combinations, more than train.search.max_trials (2)"),
    ({"space": {"max_depth": [2]}, "metric": "rmse"}, "train.search.metric: unknown metric 'rmse' for classification"),
    ({"space": {"n_estimators": [10, 20]}}, "train.search.space: ['n_estimators'] also fixed in train.params"),
    ({"space": {"max_depth": [2]}, "folds": 1}, "train.search.folds: Input should be greater than or equal to 2"),
    ({"space": {"max_depth": [2]}, "budget": 3}, "train.search.budget: unknown key"),
    ({"method": "random", "space": {"max_depth": {"low": 8, "high": 2}}},
     "train.search.space: max_depth: range: low (8.0) must be below high (2.0)"),
])
def test_a_bad_search_space_names_the_key_and_trains_nothing(tmp_path: Path, capsys, search: dict[str, Any],
                                                             expected: str) -> None:
    config = project(tmp_path, "classification", search)
    code, text = cli(config, "run", capsys=capsys)
    assert code == 1, text
    assert expected in text
    assert not (tmp_path / "outputs" / "train.json").exists()
    assert not (tmp_path / "outputs" / "model").exists()


def test_a_trial_that_raises_names_its_params_and_registers_nothing(tmp_path: Path, capsys) -> None:
    """max_features=0 is accepted by the constructor and refused by fit: one candidate fails."""
    config = project(tmp_path, "classification", {"space": {"max_features": [2, 0]}, "folds": 2})
    code, text = cli(config, "run", capsys=capsys)
    assert code == 1, text
    assert "train.search: trial 2 failed with params {'max_features': 0}" in text
    assert "max_features" in text.splitlines()[-1]
    assert not (tmp_path / "outputs" / "train.json").exists()
    assert not (tmp_path / ".mlops" / "mlflow.db").exists() or not _registered(config)


def _registered(config: Path) -> list[Any]:
    from mlflow import MlflowClient

    return list(MlflowClient(f"sqlite:///{config.parent / '.mlops' / 'mlflow.db'}").search_registered_models())


def test_the_space_names_estimator_params_even_when_model_wraps_the_estimator() -> None:
    """xgboost's classifier sits inside model.labels.EncodedLabels: `max_depth` still finds it."""
    from model import ModelSpec, build_model
    from pipeline.errors import PipelineError
    from pipeline.search import pipeline_names

    def spec(estimator: str) -> ModelSpec:
        return ModelSpec(task="classification", numeric=("a",), categorical=(), estimator=estimator, params={}, seed=1)

    assert pipeline_names(build_model(spec("xgboost")), {"max_depth": [2]}) == {"max_depth": "estimator__estimator__max_depth"}
    assert pipeline_names(build_model(spec("linear")), {"C": [1.0]}) == {"C": "estimator__C"}
    with pytest.raises(PipelineError, match="'n_estimators' is not a parameter of the estimator"):
        pipeline_names(build_model(spec("linear")), {"n_estimators": [10]})
