"""`mlops monitor --open-pr` against a LOCAL STAND-IN of the GitHub REST API
(tests/pipeline/monitor/github_standin.py, not GitHub): one PR per model, updated in place,
closed when the signal clears, a cooldown, and the 403 of a repository that does not let
GitHub Actions open pull requests."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.monitor.pullrequest import set_data_paths
from tests.pipeline.monitor.github_standin import Repo, StandIn

BRANCH = "mlops/retrain/penguins-sex"


@pytest.fixture()
def github(monkeypatch) -> Iterator[StandIn]:
    standin = StandIn(Repo(page_cap=1))  # one item per page: every listing is paginated
    for key, value in standin.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RETRAIN_TOKEN", raising=False)
    yield standin
    standin.close()


def run(config: Path, data: Path, capsys) -> tuple[int, str]:
    code = main(["--config", str(config), "monitor", "--open-pr", "--data", str(data)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_one_pr_opened_updated_in_place_closed_when_healthy_and_a_cooldown(make_config, write_live, github, tmp_path,
                                                                          capsys):
    config = make_config()
    code, text = run(config, write_live("a.csv", shift=True, seed=1), capsys)
    assert code == 1, text
    [pr] = github.open_pulls()
    assert pr["head"]["ref"] == BRANCH and pr["base"]["ref"] == "main"
    assert pr["body"].startswith("<!-- mlops-monitor -->\n## ❌ penguins-sex: Retraining warranted")
    files = github.repo.files(BRANCH)
    settings = yaml.safe_load(files["mlops.yaml"])
    assert settings["data"]["path"] == "data/monitor/train.csv"
    assert settings["data"]["reference"] == "data/monitor/reference.csv"
    train = pd.read_csv(io.StringIO(files["data/monitor/train.csv"]))
    assert len(train) == 333 + 333 and train["sample_id"].is_unique  # the training data plus the labelled live rows
    assert len(pd.read_csv(io.StringIO(files["data/monitor/reference.csv"]))) == 333  # the window's rows
    first_commit = github.repo.refs[f"heads/{BRANCH}"]
    assert json.loads((tmp_path / "outputs" / "monitor.json").read_text())["pull_request"]["action"] == "opened"

    code, text = run(config, write_live("b.csv", shift=True, seed=2), capsys)
    assert code == 1, text
    assert [p["number"] for p in github.open_pulls()] == [pr["number"]] and len(github.repo.pulls) == 1
    assert github.repo.refs[f"heads/{BRANCH}"] != first_commit  # force-updated, one commit on main
    assert "b.csv" in github.open_pulls()[0]["body"]
    assert "retraining pull request: updated #1" in text

    code, text = run(config, write_live("c.csv", shift=False, seed=3), capsys)
    assert code == 0, text
    assert github.open_pulls() == [] and github.repo.pulls[0]["state"] == "closed"
    assert "signal cleared" in github.repo.comments[-1]["body"] and github.repo.comments[-1]["issue"] == pr["number"]
    assert f"heads/{BRANCH}" not in github.repo.refs

    code, text = run(config, write_live("d.csv", shift=True, seed=4), capsys)  # within the 3d cooldown
    assert code == 1, text
    assert github.open_pulls() == [] and len(github.repo.pulls) == 1
    assert f"heads/{BRANCH}" not in github.repo.refs
    assert "retraining pull request: cooldown" in text

    four_days_ago = datetime.fromtimestamp(time.time() - 4 * 86_400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    github.repo.pulls[0]["closed_at"] = four_days_ago
    code, text = run(config, write_live("e.csv", shift=True, seed=5), capsys)
    assert code == 1, text
    assert len(github.open_pulls()) == 1 and len(github.repo.pulls) == 2


def test_the_merged_window_is_no_longer_drift(make_config, write_live, github, tmp_path, capsys):
    """After the PR's change is merged, the same live data measured against the moved
    reference shows no drifted feature."""
    config = make_config()
    live = write_live("a.csv", shift=True, seed=1)
    assert run(config, live, capsys)[0] == 1
    for path, content in github.repo.files(BRANCH).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    main(["--config", str(config), "monitor", "--data", str(live)])
    assert json.loads((tmp_path / "outputs" / "monitor.json").read_text())["drift"]["drifted"] == []
    assert main(["--config", str(config), "validate"]) == 0  # the new training data passes the contract


def test_a_repository_that_forbids_actions_prs_gets_the_setting_named_and_no_branch(make_config, write_live, github,
                                                                                      capsys):
    github.repo.deny_pull_requests = True
    code, text = run(make_config(), write_live("a.csv", shift=True), capsys)
    assert code == 2
    assert "GitHub Actions is not permitted to create or approve pull requests" in text
    assert '"Allow GitHub Actions to create and approve pull requests"' in text and "RETRAIN_TOKEN" in text
    assert "Traceback" not in text
    assert f"heads/{BRANCH}" not in github.repo.refs and github.repo.pulls == []


def test_healthy_data_with_no_pr_changes_nothing(make_config, write_live, github, capsys):
    code, _ = run(make_config(), write_live("a.csv", shift=False), capsys)
    assert code == 0
    assert [method for method, _ in github.repo.requests] == ["GET"]  # one listing of open PRs, no write


def test_a_missing_token_is_a_clear_error(make_config, write_live, github, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_TOKEN")
    code, text = run(make_config(), write_live("a.csv", shift=True), capsys)
    assert code == 2 and "GITHUB_TOKEN (or RETRAIN_TOKEN) is not set" in text


def test_set_data_paths_keeps_comments_and_adds_a_missing_reference():
    text = "project: x\ndata:\n  path: data/a.csv      # FORK: here\n  target: y\n"
    out = set_data_paths(text, "data/monitor/train.csv", "data/monitor/reference.csv")
    assert "  path: data/monitor/train.csv      # FORK: here\n  reference: data/monitor/reference.csv\n" in out
    assert yaml.safe_load(out)["data"] == {"path": "data/monitor/train.csv", "reference": "data/monitor/reference.csv",
                                           "target": "y"}
