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
from pipeline.promote import promote


@pytest.fixture()
def trained(repo_copy):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run"], cwd=repo_copy, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    config = load_config(repo_copy / "mlops.yaml")
    tracking.configure(config)
    outputs = repo_copy / "outputs"
    return config, json.loads((outputs / "train.json").read_text()), json.loads((outputs / "evaluate.json").read_text())


def local_aliases(config) -> dict[str, str]:
    found = {alias: tracking.alias_version(config, alias) for alias in (tracking.CHALLENGER, tracking.CHAMPION)}
    return {alias: version for alias, version in found.items() if version is not None}


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


KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # spill every page to the file, so the journal is written
db.execute("BEGIN EXCLUSIVE")
db.execute("UPDATE registered_model_aliases SET version = 99")
db.execute("CREATE TABLE filler AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
           "SELECT i FROM n")
os.kill(os.getpid(), signal.SIGKILL)  # killed mid-transaction: a hot journal stays behind
"""


def test_a_writer_killed_mid_transaction_loses_no_alias(trained):
    """The registry is read through MLflow's client, which rolls a hot journal back; reading
    the tables directly used to see no alias at all and compare against no champion."""
    config, info, evaluation = trained
    promote(config, info, evaluation, challenger_only=False)
    database = config.root / ".mlops" / "mlflow.db"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(database)], timeout=60)
    assert database.with_name("mlflow.db-journal").is_file()
    assert local_aliases(config) == {"challenger": "1", "champion": "1"}
