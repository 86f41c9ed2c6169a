"""The report gate (.github/scripts/report_gate.py): what the privileged comment workflow accepts.

Each refusal case is a tampered artifact a malicious pull request could upload; the fork case
queries a local fake of the GitHub REST API (a real HTTP server in a thread, recording requests).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from actkit import FakeGitHubAPI

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("report_gate", REPO / ".github" / "scripts" / "report_gate.py")
gate = importlib.util.module_from_spec(SPEC)  # type: ignore[arg-type]
sys.modules[SPEC.name] = gate
SPEC.loader.exec_module(gate)  # type: ignore[union-attr]

SHA = "a" * 40
REPORT = """<!-- mlops-report -->
## ✅ penguins-sex: Every data check and model test passed

| metric | challenger | champion |
|---|---:|---:|
| accuracy | 0.94 | 0.93 |

```mermaid
xychart-beta
  y-axis "score" 0 --> 1
  bar [0.94]
```

<details>
<summary>Lineage</summary>

- git sha: `abc`

</details>
<sub>PNG plots written as files</sub>
"""


def event(pr: int = 7, sha: str = SHA, fork: bool = False, kind: str = "pull_request") -> dict:
    return {"workflow_run": {
        "id": 42, "event": kind, "head_sha": sha, "head_branch": "feature",
        "head_repository": {"full_name": f"{'contributor' if fork else 'acme'}/model",
                            "owner": {"login": "contributor" if fork else "acme"}},
        "pull_requests": [] if fork else [{"number": pr, "head": {"sha": sha}}],
    }}


@pytest.fixture()
def artifact(tmp_path: Path) -> Path:
    report = tmp_path / "report.md"
    report.write_text(REPORT, encoding="utf-8")
    out = tmp_path / "artifact"
    gate.pack(report, 7, SHA, out)
    return out


def check(artifact: Path, tmp_path: Path, ev: dict | None = None, api: str = "") -> tuple[int, Path]:
    return gate.check(artifact, ev or event(), tmp_path / "vetted", api, "acme/model", "token")


def test_pack_then_check_accepts_the_report(artifact: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in artifact.iterdir()) == ["meta.json", "report.md"]
    pr, vetted = check(artifact, tmp_path)
    assert pr == 7
    assert vetted.read_text(encoding="utf-8") == REPORT


def test_the_pipeline_report_passes_the_format_check() -> None:
    """The report pipeline/report.py writes (its constant marker and structure) is accepted."""
    from pipeline.report import MARKER

    assert MARKER == gate.MARKER


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda a: (a / "meta.json").write_text(json.dumps({"version": 1, "pr": 8, "head_sha": SHA})), "pr 8 is not"),
        (lambda a: (a / "meta.json").write_text(json.dumps({"version": 1, "pr": 7, "head_sha": "b" * 40})), "head_sha"),
        (lambda a: (a / "meta.json").write_text("{not json"), "not valid JSON"),
        (lambda a: (a / "meta.json").write_text(json.dumps({"version": 1, "pr": "7", "head_sha": SHA})), "positive integer"),
        (lambda a: (a / "meta.json").write_text(json.dumps({"version": 1, "pr": 7, "head_sha": SHA, "x": 1})),
         "exactly the keys"),
        (lambda a: (a / "report.md").write_text(REPORT + "x" * gate.MAX_REPORT_BYTES), "more than the limit"),
        (lambda a: (a / "report.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary"), "not UTF-8"),
        (lambda a: (a / "report.md").write_text("just some text\n"), "report marker"),
        (lambda a: (a / "report.md").write_text(REPORT + "<img src=https://evil.example/p.png>\n"), "<img>"),
        (lambda a: (a / "report.md").write_text(REPORT + "<script>alert(1)</script>\n"), "<script>"),
        (lambda a: (a / "report.md").write_text(REPORT + "![x](https://evil.example/p.png)\n"), "images"),
        (lambda a: (a / "report.md").write_text(REPORT + "<!-- hidden -->\n"), "HTML comment"),
        (lambda a: (a / "report.md").write_text(REPORT + "bell \x07\n"), "control characters"),
        (lambda a: (a / "extra.sh").write_text("echo hi\n"), "unexpected files"),
        (lambda a: (a / "meta.json").unlink(), "meta.json missing"),
    ],
    ids=["wrong-pr", "wrong-sha", "bad-json", "pr-string", "extra-key", "oversized", "binary", "no-marker",
         "img-tag", "script-tag", "md-image", "hidden-comment", "control-char", "extra-file", "no-meta"],
)
def test_tampered_artifacts_are_refused(artifact: Path, tmp_path: Path, tamper, reason: str) -> None:
    tamper(artifact)
    with pytest.raises(gate.Refused, match=reason.replace("(", r"\(").replace("<", "<")):
        check(artifact, tmp_path)
    assert not (tmp_path / "vetted" / "report.md").exists()


def test_a_symlinked_report_is_refused(artifact: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text(REPORT)
    (artifact / "report.md").unlink()
    os.symlink(secret, artifact / "report.md")
    with pytest.raises(gate.Refused, match="not a regular file"):
        check(artifact, tmp_path)


def test_a_run_not_from_a_pull_request_is_refused(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(gate.Refused, match="not a pull_request run"):
        check(artifact, tmp_path, event(kind="push"))


def test_tags_inside_code_fences_are_data_not_html(tmp_path: Path) -> None:
    # the blank line ends the HTML block `</details>` opened: without it the fence would be raw HTML
    text = REPORT + "\n```\n<script>in a fence</script>\n```\n"
    assert gate.check_markdown(text.encode()) == []


@pytest.fixture()
def fake_api():
    with FakeGitHubAPI("acme/model", []) as api:
        yield api


def test_fork_pr_number_comes_from_the_api(artifact: Path, tmp_path: Path, fake_api) -> None:
    """GitHub lists no PRs in workflow_run for forks: the gate asks the API for owner:branch."""
    fake_api.pulls[:] = [{"number": 7, "head": {"sha": SHA}}, {"number": 9, "head": {"sha": "c" * 40}}]
    pr, _ = check(artifact, tmp_path, event(fork=True), api=fake_api.url)
    assert pr == 7
    _, path, auth, _ = fake_api.requests[0]
    assert path.startswith("/repos/acme/model/pulls?") and "head=contributor%3Afeature" in path
    assert auth == "Bearer token"


def test_fork_artifact_claiming_another_pr_is_refused(artifact: Path, tmp_path: Path, fake_api) -> None:
    fake_api.pulls[:] = [{"number": 9, "head": {"sha": SHA}}]
    with pytest.raises(gate.Refused, match="pr 7 is not the triggering run's pull request"):
        check(artifact, tmp_path, event(fork=True), api=fake_api.url)


# ---------------------------------------------------------------- issue 11: nothing to post is not a failure
def test_no_artifact_is_nothing_to_post(tmp_path: Path) -> None:
    """The PR run's report step failed or was skipped: no artifact; the comment job must not go red."""
    with pytest.raises(gate.NothingToPost, match="uploaded no report artifact"):
        check(tmp_path / "missing", tmp_path)


@pytest.mark.parametrize("fork", [False, True], ids=["same-repo", "fork"])
def test_a_head_that_moved_on_is_nothing_to_post(artifact: Path, tmp_path: Path, fake_api, fork: bool) -> None:
    """A newer push: the PR's head is another commit now. An older run finishing late must neither
    fail nor overwrite the newer report (the event's pull_requests list was written at its start)."""
    fake_api.pulls[:] = [{"number": 7, "head": {"sha": "d" * 40}}]
    with pytest.raises(gate.NothingToPost, match="head"):
        check(artifact, tmp_path, event(fork=fork), api=fake_api.url)
    assert not (tmp_path / "vetted" / "report.md").exists()


def test_same_repo_pr_with_current_head_is_accepted(artifact: Path, tmp_path: Path, fake_api) -> None:
    fake_api.pulls[:] = [{"number": 7, "head": {"sha": SHA}}]
    assert check(artifact, tmp_path, api=fake_api.url)[0] == 7
    assert fake_api.requests[-1][1] == "/repos/acme/model/pulls/7"


def test_main_skips_with_a_notice_and_exit_0(tmp_path: Path, monkeypatch, capsys) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event()))
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    argv = ["check", "--artifact", str(tmp_path / "none"), "--event", str(event_file), "--out", str(tmp_path / "vetted")]
    assert gate.main(argv) == 0
    assert "::notice title=no report to post::" in capsys.readouterr().out
    assert "pr=\n" in outputs.read_text()


# ---------------------------------------------------------------- issue 11: mentions and links from data values
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("| island | @octocat | 0.9 |", "mention @octocat"),
        ("| island | @acme/maintainers | 0.9 |", "mention @acme/maintainers"),
        ("slice (@acme) failed", "mention @acme"),
        ("[click](javascript:alert(1))", "javascript:"),
        ("[click](JavaScript:alert(1))", "JavaScript:"),
        ("[passwd](/etc/passwd)", "'/etc/passwd'"),
        ("[home](/home/runner/work)", "'/home/runner/work'"),
        ("[model](outputs/model)", "'outputs/model'"),
        ("[env](../../.env)", "'../../.env'"),
        ("[up](..)", "'..'"),
        ("[x][ref]\n\n[ref]: /etc/hostname", "'/etc/hostname'"),
        ("[x](file:///etc/passwd)", "file:///etc/passwd"),
        ("[x](<javascript:alert(1)>)", "javascript:"),
    ],
    ids=["user", "team", "in-parentheses", "javascript", "javascript-case", "absolute", "runner-dir", "relative-dir",
         "dotdot", "parent", "reference-definition", "file-url", "angle-brackets"],
)
def test_mentions_and_local_or_script_links_are_refused(line: str, reason: str) -> None:
    """A data value (a category, a column name) can carry these into the report. A mention would
    notify a user or team from the privileged job; CML-style publishing uploads any link target
    that is a local file (a directory throws EISDIR); `javascript:` has no place in a report."""
    problems = "\n".join(gate.check_markdown((REPORT + line + "\n").encode()))
    assert reason in problems, problems


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("``<img src=x>`", "<img>"),  # an opening run of two has no closer: GitHub shows HTML
        ("\\`<img src=x>`", "<img>"),  # an escaped backtick opens nothing
        ("| `a | <img src=x>` |", "<img>"),  # a table splits cells at the pipe before code spans
        ("| `a | @octocat` |", "mention @octocat"),
        ("<details>`@octocat`", "mention @octocat"),  # inside an HTML block backticks are raw
    ],
    ids=["unclosed-run", "escaped-backtick", "table-pipe", "table-pipe-mention", "html-block"],
)
def test_what_only_looks_like_a_code_span_is_checked(line: str, reason: str) -> None:
    """The gate skips code spans only where GitHub surely reads one, or HTML could hide in a fake one."""
    problems = "\n".join(gate.check_markdown((REPORT + line + "\n").encode()))
    assert reason in problems, problems


@pytest.mark.parametrize(
    "line",
    ["see [the docs](https://example.org/docs) and [above](#lineage)", "`@octocat` in code", "user@example.org",
     "`models:/penguins-sex@champion`", "models:/penguins-sex@champion",
     "| island | `<unknown> \\| <img src=x>` | 0.9 |", "``a`<b> @c``", "\n```\n@octocat [x](/etc/passwd)\n```"],
    ids=["web-and-anchor", "code-span", "email", "model-uri-code", "model-uri", "table-code-html", "double-fence", "fence"],
)
def test_web_links_code_and_emails_pass(line: str) -> None:
    # after a blank line: REPORT ends in an HTML block (`</details>`), where backticks are raw
    assert gate.check_markdown((REPORT + "\n" + line + "\n").encode()) == []


def test_main_writes_step_outputs_and_refuses_with_error_lines(artifact: Path, tmp_path: Path, monkeypatch, capsys,
                                                               fake_api) -> None:
    fake_api.pulls[:] = [{"number": 7, "head": {"sha": SHA}}]
    monkeypatch.setenv("GITHUB_API_URL", fake_api.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/model")
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event()))
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    argv = ["check", "--artifact", str(artifact), "--event", str(event_file), "--out", str(tmp_path / "vetted")]
    assert gate.main(argv) == 0
    assert "pr=7\n" in outputs.read_text()
    event_file.write_text(json.dumps(event(pr=8)))
    assert gate.main(argv) == 1
    assert "::error title=report refused::" in capsys.readouterr().out


def test_a_real_fenced_block_still_allows_markup_inside() -> None:
    text = REPORT + "\n~~~~ text\n<img src=x> <!-- data -->\n~~~\n````\n~~~~\n   ```python\n   <b>\n   ```\n"
    assert gate.check_markdown(text.encode()) == []


@pytest.mark.parametrize(
    "trick",
    [
        "    ```\n",                 # 4 spaces: indented code on GitHub, not a fence
        "\t```\n",                   # a tab is 4 columns
        "- ```\n  ```\n",            # a fence inside a list item closed by a top-level-looking one
        "> ```\n",                   # a fence inside a quote
        "``` a`b\n",                 # backticks in the info string: inline code, not a fence
        "<details>\n```\n",          # inside an HTML block a fence line is raw text
        "```\n``` not-a-closer\n```\n",  # a closer takes no info string: the third line re-opens
        "```\n~~~\n```\n```\n",      # tildes do not close a backtick fence
        "````\n```\n````\n```\n",     # a shorter run does not close a longer fence
        "- a\n\n  ```\n",            # a list item's fence: dedented lines leave the list and the fence
    ],
    ids=["indented-4", "tab", "list-item", "quote", "backtick-info", "html-block", "closer-with-info",
         "tilde-closer", "short-closer", "list-dedent"],
)
def test_fence_tricks_do_not_hide_html(trick: str) -> None:
    """Text GitHub renders as HTML after a fake or mismatched fence is still checked (or refused)."""
    text = REPORT + trick + "<img src=https://evil.example/p.png>\n<!-- hidden -->\n"
    problems = "\n".join(gate.check_markdown(text.encode()))
    assert problems, trick
    if trick not in ("```\n~~~\n```\n```\n", "````\n```\n````\n```\n"):
        assert "HTML tag <img>" in problems or "fence" in problems


def test_indented_fence_bypass_reports_the_html_itself() -> None:
    """The reviewer's case: 4 spaces then ``` is not a fence, so the tag and the comment are seen."""
    text = REPORT + "    ```\n<img src=https://evil.example/p.png>\n<!-- hidden -->\n"
    problems = "\n".join(gate.check_markdown(text.encode()))
    assert "HTML tag <img> is not allowed" in problems
    assert "HTML comment (hidden content) is not allowed" in problems


@pytest.mark.parametrize("line", ["![a[b]c](https://evil.example/p.png)", "![x]", "<?php x ?>", "<!DOCTYPE x>", "<pre>"])
def test_other_hidden_or_fetched_content_is_refused(line: str) -> None:
    assert gate.check_markdown((REPORT + line + "\n").encode())
