"""Promote: `champion` moves only after passing gates against the champion that is current,
once, as the final step; a failure before it moves nothing and loses no version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline import tracking
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.promote import local_aliases, promote


@pytest.fixture()
def trained(repo_copy):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run"], cwd=repo_copy, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    config = load_config(repo_copy / "mlops.yaml")
    tracking.configure(config)
    outputs = repo_copy / "outputs"
    return config, json.loads((outputs / "train.json").read_text()), json.loads((outputs / "evaluate.json").read_text())


def versions(config) -> int:
    from mlflow import MlflowClient

    return len(MlflowClient().search_model_versions(f"name='{config.registered_model}'"))


def test_promote_twice_moves_once(trained):
    config, info, evaluation = trained
    first = promote(config, info, evaluation, challenger_only=False)
    assert first["moved"] and local_aliases(config) == {"challenger": "1", "champion": "1"}
    again = promote(config, info, evaluation, challenger_only=False)
    assert not again["moved"] and "already `champion`" in again["note"]
    assert versions(config) == 1


def test_a_failure_before_the_final_move_changes_nothing(trained, monkeypatch):
    from mlflow import MlflowClient

    config, info, evaluation = trained

    def broken(*args, **kwargs):
        raise RuntimeError("registry went away")

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", broken)
    with pytest.raises(RuntimeError):
        promote(config, info, evaluation, challenger_only=False)
    assert local_aliases(config) == {"challenger": "1"}  # no champion was set
    assert versions(config) == 1  # and the version is kept


def test_champion_moved_since_evaluation_is_refused(trained):
    from mlflow import MlflowClient

    config, info, evaluation = trained
    assert evaluation["champion_version"] is None  # evaluated when there was no champion
    client = MlflowClient()
    newer = client.create_model_version(config.registered_model, info["model_uri"], run_id=info["run_id"]).version
    assert str(newer) == "2"
    client.set_registered_model_alias(config.registered_model, "champion", "1")  # moved meanwhile, e.g. in the MLflow UI
    with pytest.raises(PipelineError, match="evaluation compared against no registered champion; run `mlops evaluate` again"):
        promote(config, info, evaluation, challenger_only=False)
    assert local_aliases(config)["champion"] == "1"
    assert promote(config, info, {**evaluation, "champion_version": "1"}, challenger_only=False)["moved"]
    assert local_aliases(config)["champion"] == "2"
