"""The sticky comment poster (.github/scripts/sticky_comment.py) against a local fake of the REST API.

The cases are where `cml comment update` (0.20.4) goes wrong on real pull requests: it reads only
the first page of comments (a long PR gets a second report) and edits any comment carrying the
watermark, whoever wrote it (a pasted watermark makes the bot edit a human's comment, or fail
with 403). The fake (actkit.FakeGitHubAPI) pages like GitHub and refuses to let the bot edit a
comment it did not write.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from actkit import FakeGitHubAPI

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".github" / "scripts"))
SPEC = importlib.util.spec_from_file_location("sticky_comment", REPO / ".github" / "scripts" / "sticky_comment.py")
sticky = importlib.util.module_from_spec(SPEC)  # type: ignore[arg-type]
sys.modules[SPEC.name] = sticky
SPEC.loader.exec_module(sticky)  # type: ignore[union-attr]

BOT = "github-actions[bot]"
MARKER = "<!-- mlops-report -->"
REPORT = f"{MARKER}\n## ✅ penguins-sex: every check passed\n\n| metric | value |\n|---|---:|\n| accuracy | 0.94 |\n"


def comment(number: int, login: str, body: str) -> dict:
    return {"id": number, "user": {"login": login}, "body": body, "html_url": f"https://github.com/c/{number}"}


def chatter(count: int, start: int = 1) -> list[dict]:
    return [comment(start + i, f"user{i % 3}", f"looks good {i}") for i in range(count)]


def run(tmp_path: Path, api: FakeGitHubAPI, monkeypatch, report: str = REPORT) -> int:
    (tmp_path / "report.md").write_text(report, encoding="utf-8")
    monkeypatch.setenv("GITHUB_API_URL", api.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/model")
    monkeypatch.setenv("GITHUB_TOKEN", "job-token")
    return sticky.main(["--pr", "7", "--report", str(tmp_path / "report.md")])


def test_first_report_is_created(tmp_path: Path, monkeypatch) -> None:
    with FakeGitHubAPI("acme/model", [], {7: chatter(3)}) as api:
        assert run(tmp_path, api, monkeypatch) == 0
    posts = api.calls("POST")
    assert len(posts) == 1 and posts[0][1] == "/repos/acme/model/issues/7/comments"
    assert posts[0][2] == "Bearer job-token" and posts[0][3] == {"body": REPORT}
    assert not api.calls("PATCH")


def test_the_bots_comment_beyond_the_first_page_is_edited_not_duplicated(tmp_path: Path, monkeypatch) -> None:
    """150 comments, the report is number 120: CML's single listComments call (30 a page) misses it."""
    comments = [*chatter(119), comment(5000, BOT, MARKER + "\nold report"), *chatter(30, start=200)]
    with FakeGitHubAPI("acme/model", [], {7: comments}) as api:
        assert run(tmp_path, api, monkeypatch) == 0
    assert not api.calls("POST")
    (patch,) = api.calls("PATCH")
    assert patch[1] == "/repos/acme/model/issues/comments/5000" and patch[3] == {"body": REPORT}
    assert len(api.calls("GET")) == 2  # 100 a page, following the Link header


def test_a_human_comment_carrying_the_watermark_is_never_edited(tmp_path: Path, monkeypatch) -> None:
    """A reviewer quotes the report (watermark first): the bot edits its own comment, not theirs."""
    comments = [comment(1, BOT, MARKER + "\nold report"), comment(2, "reviewer", MARKER + "\nquoted report, later")]
    with FakeGitHubAPI("acme/model", [], {7: comments}) as api:
        assert run(tmp_path, api, monkeypatch) == 0
    (patch,) = api.calls("PATCH")
    assert patch[1].endswith("/issues/comments/1")
    assert api.comments[7][1]["body"] == MARKER + "\nquoted report, later"


def test_only_a_human_watermark_means_a_new_comment(tmp_path: Path, monkeypatch) -> None:
    """CML would PATCH the human's comment and get 403; here the bot creates its own."""
    with FakeGitHubAPI("acme/model", [], {7: [comment(1, "mallory", MARKER + "\nfake report")]}) as api:
        assert run(tmp_path, api, monkeypatch) == 0
    assert not api.calls("PATCH") and len(api.calls("POST")) == 1
    assert api.comments[7][0]["body"] == MARKER + "\nfake report"


def test_the_report_is_vetted_again_before_it_is_sent(tmp_path: Path, monkeypatch, capsys) -> None:
    with FakeGitHubAPI("acme/model", [], {7: []}) as api:
        assert run(tmp_path, api, monkeypatch, REPORT + "| x | @acme/admins |\n") == 1
    assert not api.calls("POST") and not api.calls("GET")
    assert "mention @acme/admins" in capsys.readouterr().out


def test_an_api_error_is_one_error_line(tmp_path: Path, monkeypatch, capsys) -> None:
    with FakeGitHubAPI("other/repo", [], {}) as api:  # every path under acme/model is a 404 here
        assert run(tmp_path, api, monkeypatch) == 1
    out = capsys.readouterr().out
    assert "::error title=sticky comment::GitHub answered 404" in out and "Traceback" not in out


@pytest.mark.parametrize("author", ["github-actions[bot]", "mlops-bot[bot]"])
def test_own_comment_matches_author_and_leading_watermark_only(author: str) -> None:
    comments = [comment(1, author, "text first\n" + MARKER), comment(2, "someone", MARKER), comment(3, author, MARKER + "\nr"),
                comment(4, author, MARKER + "\nduplicate")]
    assert sticky.own_comment(comments, author)["id"] == 3
