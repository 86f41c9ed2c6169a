"""Post the vetted report as ONE sticky pull-request comment through the GitHub REST API.

Standard library only; the comment workflow runs it after report_gate.py accepted the artifact.

    sticky_comment.py --pr N --report DIR/report.md
        env: GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL, COMMENT_AUTHOR (default
        github-actions[bot], the login GITHUB_TOKEN's comments carry)

Why not `cml comment update` (CML 0.20.4, read at its source): it lists only the first 30
comments of a pull request (no pagination), so a long discussion gets a second report; it edits
the newest comment that carries the watermark whoever wrote it, so a pasted watermark makes the
bot edit a human's comment or fail with 403; and it publishes by default: every link whose
target exists as a local file is uploaded to CML's asset host (a directory link throws EISDIR
and posts nothing). Here the bot's own comment is found on every page (author = COMMENT_AUTHOR,
body starting with the report marker), edited with PATCH or created with POST; nothing is
uploaded anywhere, and the report is re-vetted with the gate's own check before it is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report_gate  # the sibling script, not an installed package

BOT = "github-actions[bot]"
PER_PAGE = 100
MAX_PAGES = 100  # 10,000 comments: far beyond any pull request, a bound against a looping Link header
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHub:
    """The few REST calls this needs, with the workflow's token."""

    def __init__(self, api_url: str, repository: str, token: str) -> None:
        self.base = f"{api_url.rstrip('/')}/repos/{repository}"
        self.token = token

    def call(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[Any, str]:
        """JSON answer and the Link header of one request."""
        request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Accept": "application/vnd.github+json",
                                                  "X-GitHub-Api-Version": "2022-11-28",
                                                  "Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response), response.headers.get("Link", "")

    def comments(self, pr: int) -> list[dict[str, Any]]:
        """Every comment of the pull request, following the Link header page by page."""
        url: str | None = f"{self.base}/issues/{pr}/comments?per_page={PER_PAGE}"
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            page, link = self.call("GET", url)
            found += page
            following = _NEXT.search(link)
            url = following.group(1) if following else None
        return found


def own_comment(comments: list[dict[str, Any]], author: str) -> dict[str, Any] | None:
    """The oldest comment written by `author` that starts with the report marker (the sticky one).

    A comment by anyone else is never a candidate, whatever it contains.
    """
    for comment in comments:
        if (comment.get("user") or {}).get("login") == author and str(comment.get("body", "")).startswith(report_gate.MARKER):
            return comment
    return None


def post(github: GitHub, pr: int, report: str, author: str) -> tuple[str, str]:
    """Edit the bot's sticky comment, or create it; returns ("updated"|"created", its URL)."""
    problems = report_gate.check_markdown(report.encode("utf-8"))
    if problems:
        raise report_gate.Refused("\n".join(problems))
    existing = own_comment(github.comments(pr), author)
    if existing is not None:
        answer, _ = github.call("PATCH", f"{github.base}/issues/comments/{existing['id']}", {"body": report})
        return "updated", str(answer.get("html_url", ""))
    answer, _ = github.call("POST", f"{github.base}/issues/{pr}/comments", {"body": report})
    return "created", str(answer.get("html_url", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pr", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    github = GitHub(os.environ.get("GITHUB_API_URL", "https://api.github.com"), os.environ.get("GITHUB_REPOSITORY", ""),
                    os.environ.get("GITHUB_TOKEN", ""))
    try:
        action, url = post(github, args.pr, args.report.read_text(encoding="utf-8"),
                           os.environ.get("COMMENT_AUTHOR") or BOT)
    except report_gate.Refused as exc:
        for line in str(exc).splitlines():
            print(f"::error title=report refused::{line}")
        return 1
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        print(f"::error title=sticky comment::GitHub answered {exc.code} to {exc.geturl()}: {detail}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"::error title=sticky comment::{exc}")
        return 1
    print(f"report comment {action} on PR #{args.pr}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
