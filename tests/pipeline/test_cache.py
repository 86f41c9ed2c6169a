"""The step cache cannot lie: what `mlops run` skips was really unchanged, failures leave nothing
stale behind, a damaged cache is discarded, and two runs in one folder do not interleave."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.pipeline.test_runner import edit_config, mlops, steps_that_ran

ALL = ["validate", "train", "evaluate", "report"]
STALE = ("validate.json", "train.json", "model", "evaluate.json", "report.md", "summary.json")


def test_a_helper_module_added_under_model_reruns_train(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    helper = repo_copy / "model" / "extra_features.py"
    helper.write_text("CLIP = 3.0\n")
    features = repo_copy / "model" / "features.py"
    features.write_text(features.read_text() + "\nfrom model.extra_features import CLIP  # noqa: E402,F401\n")
    first = mlops(repo_copy, "run")
    assert first.returncode == 0, first.stderr
    assert steps_that_ran(first.stderr) == ALL
    helper.write_text("CLIP = 4.0\n")  # only the imported helper changes
    second = mlops(repo_copy, "run")
    assert second.returncode == 0, second.stderr
    assert steps_that_ran(second.stderr) == ALL
    assert "nothing changed" not in second.stderr


def test_a_failed_standalone_validate_then_a_revert_reruns_validate(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    original = (repo_copy / "mlops.yaml").read_text()
    edit_config(repo_copy, lambda raw: raw["validate"]["columns"]["body_mass_g"].update(max=4000))
    assert mlops(repo_copy, "validate").returncode == 1
    assert not (repo_copy / "outputs" / "train.json").exists()  # downstream outputs went with it
    (repo_copy / "mlops.yaml").write_text(original)
    again = mlops(repo_copy, "run")
    assert again.returncode == 0, again.stderr
    assert steps_that_ran(again.stderr) == ALL
    assert json.loads((repo_copy / "outputs" / "validate.json").read_text())["passed"] is True


def test_an_output_changed_by_hand_is_not_a_hit(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    evaluation = repo_copy / "outputs" / "evaluate.json"
    evaluation.write_text(evaluation.read_text().replace('"passed": true', '"passed": false', 1))
    again = mlops(repo_copy, "run")
    assert again.returncode == 0, again.stderr
    assert steps_that_ran(again.stderr) == ["evaluate", "report"]
    assert json.loads(evaluation.read_text())["passed"] is True


def test_a_read_level_failure_removes_the_stale_outputs(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    data = repo_copy / "data" / "penguins.csv"
    data.write_text(data.read_text().replace(",", ";"))  # a semicolon file: unreadable as declared
    failed = mlops(repo_copy, "run")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and "penguins.csv" in failed.stderr
    left = [name for name in STALE if (repo_copy / "outputs" / name).exists()]
    assert left == [], f"stale outputs survived a failed validate: {left}"


def test_a_truncated_cache_file_is_discarded_with_a_warning(repo_copy):
    assert mlops(repo_copy, "run").returncode == 0
    cache = repo_copy / ".mlops" / "cache.json"
    cache.write_text(cache.read_text()[: len(cache.read_text()) // 2])
    again = mlops(repo_copy, "run")
    assert again.returncode == 0, again.stderr
    assert f"warning: {cache}: unreadable step cache discarded" in again.stderr
    assert steps_that_ran(again.stderr) == ALL
    assert json.loads(cache.read_text())["format"] == 2


def test_two_runs_in_one_folder_do_not_interleave(repo_copy):
    command = [sys.executable, "-m", "pipeline.cli", "run"]
    first = subprocess.Popen(command, cwd=repo_copy, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, cwd=repo_copy, stderr=subprocess.PIPE, text=True)
    outputs = [proc.communicate(timeout=600)[1] for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    ran = sorted((steps_that_ran(text) for text in outputs), key=len)
    assert ran == [[], ALL], outputs  # one trained; the other waited, then found every step done
    waiter = next(text for text in outputs if not steps_that_ran(text))
    assert "waiting for the workspace lock" in waiter and "nothing changed: every step was a cache hit" in waiter
    versions = json.loads((Path(repo_copy) / "outputs" / "promote.json").read_text())["version"]
    assert versions == "1"


def test_a_cluster_address_set_after_a_local_run_is_not_a_hit(repo_copy, monkeypatch):
    """train.json records where the model trained: a local result is not reused once RAY_ADDRESS
    names a cluster (here one that does not answer, so train must try it and fail)."""
    assert mlops(repo_copy, "run").returncode == 0
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    again = mlops(repo_copy, "run")
    assert again.returncode == 1, again.stderr
    assert "unreachable" in again.stderr and steps_that_ran(again.stderr) == ["train"]
