"""`mlops run` end to end on the bundled data, as a user runs it: exit codes, step cache,
registry aliases, and a failing run that must not move the champion."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml


def mlops(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=repo, capture_output=True, text=True, timeout=600)


def edit_config(repo: Path, mutate) -> None:
    path = repo / "mlops.yaml"
    raw = yaml.safe_load(path.read_text())
    mutate(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def aliases(repo: Path) -> dict[str, str]:
    with sqlite3.connect(repo / ".mlops" / "mlflow.db") as db:
        return {alias: str(version) for alias, version in db.execute("select alias, version from registered_model_aliases")}


def run_count(repo: Path) -> int:
    with sqlite3.connect(repo / ".mlops" / "mlflow.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def steps_that_ran(stderr: str) -> list[str]:
    return re.findall(r"^\[\d/\d\] (\w+)\s+running$", stderr, flags=re.M)


def test_run_twice_then_change_a_train_parameter(repo_copy):
    first = mlops(repo_copy, "run")
    assert first.returncode == 0, first.stderr
    assert steps_that_ran(first.stderr) == ["validate", "train", "evaluate", "report"]
    report = (repo_copy / "outputs" / "report.md").read_text()
    assert report.startswith("<!-- mlops-report -->\n## ✅")
    assert json.loads((repo_copy / "outputs" / "summary.json").read_text())["verdict"] == "pass"
    assert (repo_copy / "outputs" / "model" / "MLmodel").is_file()
    assert aliases(repo_copy) == {"challenger": "1"}
    assert "Traceback" not in first.stderr

    second = mlops(repo_copy, "run")
    assert second.returncode == 0, second.stderr
    assert steps_that_ran(second.stderr) == []
    assert len(re.findall(r"^\[\d/\d\] \w+\s+cache hit", second.stderr, flags=re.M)) == 5
    assert "nothing changed: every step was a cache hit" in second.stderr
    assert run_count(repo_copy) == 1

    edit_config(repo_copy, lambda raw: raw["train"]["params"].update(n_estimators=50))
    third = mlops(repo_copy, "run")
    assert third.returncode == 0, third.stderr
    assert steps_that_ran(third.stderr) == ["train", "evaluate", "report"]
    assert aliases(repo_copy) == {"challenger": "2"}


def test_changed_data_reruns_validation(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    data = repo_copy / "data" / "penguins.csv"
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-5]) + "\n")
    again = mlops(repo_copy, "run")
    assert again.returncode == 0, again.stderr
    assert steps_that_ran(again.stderr) == ["validate", "train", "evaluate", "report"]


def test_invalid_data_stops_the_run_and_registers_nothing(repo_copy):
    data = repo_copy / "data" / "penguins.csv"
    data.write_text(data.read_text().replace(",3750.0,", ",99999.0,", 1))
    result = mlops(repo_copy, "run")
    assert result.returncode == 1
    assert "body_mass_g" in result.stderr and "Traceback" not in result.stderr
    assert steps_that_ran(result.stderr) == ["validate"]
    assert not (repo_copy / "outputs" / "train.json").exists()
    db = repo_copy / ".mlops" / "mlflow.db"
    assert not db.exists() or aliases(repo_copy) == {}


def test_promote_moves_champion_only_after_passing_gates(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    promoted = mlops(repo_copy, "promote")
    assert promoted.returncode == 0, promoted.stderr
    assert aliases(repo_copy) == {"challenger": "1", "champion": "1"}

    # A stricter gate the next model cannot meet: it becomes challenger, never champion.
    edit_config(repo_copy, lambda raw: (raw["train"]["params"].update(n_estimators=20),
                                        raw["evaluate"]["gates"].append({"metric": "accuracy", "threshold": 1.01})))
    failed = mlops(repo_copy, "run")
    assert failed.returncode == 1
    assert "gate accuracy" in failed.stderr
    champion = json.loads((repo_copy / "outputs" / "evaluate.json").read_text())["champion"]
    assert "models:/penguins-sex@champion (version 1)" in champion["source"]
    refused = mlops(repo_copy, "promote")
    assert refused.returncode == 1
    assert "champion stays at version 1" in refused.stderr
    assert aliases(repo_copy) == {"challenger": "2", "champion": "1"}
    report = (repo_copy / "outputs" / "report.md").read_text()
    assert "## ❌" in report and "gate accuracy" in report


def test_champion_from_a_model_directory(repo_copy, tmp_path):
    assert mlops(repo_copy, "run").returncode == 0
    champion = tmp_path / "champion"
    (repo_copy / "outputs" / "model").rename(champion)
    edit_config(repo_copy, lambda raw: raw["train"]["params"].update(n_estimators=40))
    result = mlops(repo_copy, "run", "--champion", str(champion))
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((repo_copy / "outputs" / "evaluate.json").read_text())
    assert evaluation["champion"]["source"] == str(champion)
    assert evaluation["champion_metrics"]["roc_auc"] > 0.5
    assert "| roc_auc |" in (repo_copy / "outputs" / "report.md").read_text()


def test_regression_task_runs_end_to_end(repo_copy):
    def regression(raw):
        raw["task"] = "regression"
        raw["data"].update(target="body_mass_g")
        raw["data"].pop("positive_class")
        raw["train"] = {"estimator": "hist_gradient_boosting", "params": {"max_iter": 50}}
        raw["evaluate"] = {
            "gates": [{"metric": "r2", "threshold": 0.7}, {"metric": "rmse", "threshold": 450, "direction": "lower"}],
            "slices": [{"column": "species", "metric": "mae", "max": 450}],
            "champion": {"metric": "rmse", "direction": "lower", "tolerance": 25},
            "behaviour": {"directional": [{"name": "longer flippers, heavier", "column": "flipper_length_mm", "delta": 15,
                                           "expect": "increase", "min_rate": 0.6}]},
        }

    edit_config(repo_copy, regression)
    result = mlops(repo_copy, "run")
    assert result.returncode == 0, result.stderr
    report = (repo_copy / "outputs" / "report.md").read_text()
    assert "| rmse |" in report and "Residuals (actual − predicted)" in report


def test_champion_set_outside_the_cli_reruns_evaluate(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo_copy / '.mlops' / 'mlflow.db'}")
    client.set_registered_model_alias("penguins-sex", "champion", "1")  # as the MLflow UI would
    again = mlops(repo_copy, "run")
    assert again.returncode == 0, again.stderr
    assert steps_that_ran(again.stderr) == ["evaluate", "report"]
    assert "version 1" in json.loads((repo_copy / "outputs" / "evaluate.json").read_text())["champion"]["source"]
