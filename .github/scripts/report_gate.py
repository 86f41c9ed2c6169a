"""Hand the PR report from the unprivileged pull-request run to the privileged comment run.

Standard library only, so the comment workflow runs it with the runner's `python3` from the
default branch's checkout, never installing or running pull-request code.

    report_gate.py pack  --report outputs/report.md --pr N --head-sha SHA --out DIR
        (pull-request workflow) writes DIR/report.md and DIR/meta.json: the artifact.
    report_gate.py check --artifact DIR --event "$GITHUB_EVENT_PATH" --out DIR
        (comment workflow) treats the downloaded artifact as untrusted data: only the two
        expected regular files, size limits, UTF-8 Markdown starting with the report marker,
        no raw HTML beyond a short allow-list, no images, no hidden comments, no `@` mentions,
        links only to http(s) URLs or #anchors (CML-style publishers upload any link whose target
        is a local file; `javascript:` and file paths have no place in a report); the PR number
        and head commit it claims must match the `workflow_run` event (or, for fork PRs whose
        event lists no PR, the open PR the GitHub API names for that head). On success it writes
        the vetted report to DIR/report.md and `pr`/`report` to $GITHUB_OUTPUT; on failure it
        prints one `::error` line per problem and exits 1. Nothing to post is not a failure: when
        the run uploaded no artifact, or the pull request's head has moved on since (a newer run
        will report), it prints a `::notice`, writes `pr=` (empty) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- mlops-report -->"
REPORT = "report.md"
META = "meta.json"
MAX_REPORT_BYTES = 60_000  # a GitHub comment holds 65,536 characters
MAX_META_BYTES = 2_048
FORMAT_VERSION = 1
# No <pre>, <script>, <style>, <textarea>: they open HTML blocks that run across blank lines.
ALLOWED_TAGS = frozenset(
    ["details", "summary", "sub", "sup", "br", "b", "i", "em", "strong", "code", "kbd", "p", "hr", "blockquote", "ul", "ol",
     "li", "table", "thead", "tbody", "tr", "th", "td", "h1", "h2", "h3", "h4", "h5", "h6"]
)
_SHA = re.compile(r"^[0-9a-f]{40}$")
# CommonMark fences: at most 3 spaces, then 3+ backticks (info string without backticks) or 3+
# tildes; a fence closes only with the same character, at least as long, nothing but spaces after.
_OPEN_FENCE = re.compile(r"^( {0,3})(`{3,}(?=[^`]*$)|~{3,})")
_CLOSE_FENCE = re.compile(r"^( *)(`{3,}|~{3,})[ \t]*$")
# Anything that might be a fence once list/quote markers or indentation are taken into account.
_FENCE_LIKE = re.compile(r"^[ \t>*+\-0-9.)]*(```|~~~)")
_CONTAINER_PREFIX = re.compile(r"^[ \t>*+\-0-9.)]*")
_TAG = re.compile(r"<\s*/?\s*([A-Za-z][A-Za-z0-9-]*)")
_IMAGE = re.compile(r"!\[")  # any image, inline, reference or shortcut
_INLINE_TAGS = frozenset(["sub", "sup", "br", "b", "i", "em", "strong", "code", "kbd"])
_LONE_TAG = re.compile(r"^<[^<>]*>\s*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# `code spans` are text on GitHub: no HTML, mention or link inside them. Only spans GitHub reads
# for sure: the opening run is whole and not backslash-escaped, the closer is a run of the same
# length, and no unescaped `|` lies between (a table splits its cells there first).
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(?:[^|\\]|\\.)+?(?<!`)\1(?!`)")
# @user or @org/team as GitHub links them: not after a word character, `/` or another `@`.
_MENTION = re.compile(r"(?<![\w/@.+-])@[A-Za-z0-9](?:[A-Za-z0-9-]*)(?:/[\w.-]+)?")
# Link destinations: inline `](dest ...)` and link reference definitions `[label]: dest`.
_INLINE_LINK = re.compile(r"\]\(\s*<?([^\s)>]*)")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]*)")
_SAFE_TARGET = re.compile(r"^(https?://[^\s]+|#[\w.-]*)$", re.IGNORECASE)


class Refused(Exception):
    """The artifact is not what the pull-request workflow writes; the message says why."""


class NothingToPost(Exception):
    """Not an attack and not a failure: there is no report to post for this run (the message says why)."""


# ---------------------------------------------------------------- pack (pull-request side)
def pack(report: Path, pr: int, head_sha: str, out: Path) -> None:
    """Write the artifact: the report and what it claims to be about."""
    text = report.read_text(encoding="utf-8")
    problems = check_markdown(text.encode("utf-8"))
    if problems:
        raise Refused("; ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(text, encoding="utf-8")
    (out / META).write_text(json.dumps({"version": FORMAT_VERSION, "pr": pr, "head_sha": head_sha}) + "\n")


# ---------------------------------------------------------------- check (comment side)
def check_markdown(raw: bytes) -> list[str]:
    """Problems with the report's bytes; empty when it is a plain mlops Markdown report."""
    if len(raw) > MAX_REPORT_BYTES:
        return [f"{REPORT}: {len(raw)} bytes, more than the limit of {MAX_REPORT_BYTES}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"{REPORT}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    problems: list[str] = []
    if _CONTROL.search(text):
        problems.append(f"{REPORT}: contains control characters (binary data?)")
    lines = text.splitlines()
    if not lines or lines[0].strip() != MARKER:
        problems.append(f"{REPORT}: first line is not the report marker {MARKER}")
    if not any(line.startswith("#") for line in lines):
        problems.append(f"{REPORT}: no Markdown heading; not an mlops report")
    problems += _check_lines(lines)
    return problems


def _starts_html_block(text: str) -> bool:
    """Whether GitHub may start an HTML block here (a superset of CommonMark's rules 6 and 7).

    Only a line that starts with an inline tag and holds more than that tag is surely not one
    (`<sub>PNG plots ...</sub>` is a paragraph, which a fence may interrupt).
    """
    if not text.startswith("<"):
        return False
    tag = _TAG.match(text)
    return not (tag and tag.group(1).lower() in _INLINE_TAGS and not _LONE_TAG.match(text))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _check_lines(lines: list[str]) -> list[str]:
    """HTML, hidden content and images outside code fences, read the way GitHub reads fences.

    Only what GitHub renders as code may hold `<`: a fence counts only where CommonMark opens one
    for sure (0-3 spaces, not right after an HTML block line, see _OPEN_FENCE). Anything that
    looks like a fence but might be read differently (indented 4+, inside a list item or quote,
    inside an HTML block, an indented fence's content dedented below it) is refused instead of
    guessed, so the gate can never think "code" where GitHub renders HTML.
    """
    problems: list[str] = []
    fence: tuple[str, int, int] | None = None  # (character, length, indent) of the open fence
    html_block = False  # a line starting with `<` may open an HTML block: raw until a blank line
    for number, line in enumerate(lines, start=1):
        if fence is not None:
            char, length, indent = fence
            close = _CLOSE_FENCE.match(line)
            is_closer = bool(close and close.group(2)[0] == char and len(close.group(2)) >= length)
            if indent and line.strip() and (_indent(line) < indent or "\t" in line[: _indent(line) + 1]):
                problems.append(f"{REPORT}:{number}: line less indented than its code fence (ambiguous) is not allowed")
            elif is_closer and _indent(line) > 3:
                if indent:
                    problems.append(f"{REPORT}:{number}: indented closing fence (ambiguous) is not allowed")
            elif is_closer:
                fence = None
            continue
        if not line.strip():
            html_block = False
            continue
        opened = _OPEN_FENCE.match(line)
        if opened and not html_block:
            fence = (opened.group(2)[0], len(opened.group(2)), len(opened.group(1)))
            continue
        if _FENCE_LIKE.match(line):
            where = "after an HTML line" if opened else "indented, in a list or quote"
            problems.append(f"{REPORT}:{number}: code fence GitHub may not read as one ({where}) is not allowed")
        if _starts_html_block(_CONTAINER_PREFIX.sub("", line)):
            html_block = True
        text = line if html_block else _CODE_SPAN.sub("", line)  # in an HTML block, backticks are raw
        if number > 1 and ("<!" in text or "<?" in text):
            problems.append(f"{REPORT}:{number}: HTML comment (hidden content) is not allowed")
        for tag in _TAG.findall(text):
            if tag.lower() not in ALLOWED_TAGS:
                problems.append(f"{REPORT}:{number}: HTML tag <{tag}> is not allowed")
        if _IMAGE.search(text):
            problems.append(f"{REPORT}:{number}: images are not allowed (they would be fetched from elsewhere)")
        problems += _check_mentions_and_links(number, text)
    return problems


def _check_mentions_and_links(number: int, text: str) -> list[str]:
    """Mentions notify people and teams; links may only point at web pages or anchors.

    Data values (category names, column names) reach the report as text, so a PR could otherwise
    make the privileged job ping `@org/team`, or hand a poster a `javascript:` link, an absolute
    path or a directory: CML's publishing uploads every link target that exists as a local file
    (and throws EISDIR on a directory, posting nothing).
    """
    problems = [f"{REPORT}:{number}: mention {mention} is not allowed (it would notify)" for mention in _MENTION.findall(text)]
    for target in [*_INLINE_LINK.findall(text), *_LINK_DEFINITION.findall(text)]:
        if not _SAFE_TARGET.match(target):
            problems.append(f"{REPORT}:{number}: link to {target or '(empty)'!r} is not allowed "
                            "(only http(s) URLs and #anchors: not javascript:, file paths or folders)")
    return problems


def read_artifact(folder: Path) -> tuple[bytes, dict[str, Any]]:
    """The report bytes and the metadata, after checking the folder holds only those two files."""
    if not folder.is_dir():
        raise Refused(f"artifact folder {folder} not found")
    entries = sorted(folder.iterdir())
    names = {entry.name for entry in entries}
    unexpected = names - {REPORT, META}
    if unexpected:
        raise Refused(f"unexpected files in the artifact: {', '.join(sorted(unexpected))}")
    for name in (REPORT, META):
        path = folder / name
        if not path.exists():
            raise Refused(f"{name} missing from the artifact")
        if path.is_symlink() or not path.is_file():
            raise Refused(f"{name} is not a regular file")
    if (folder / META).stat().st_size > MAX_META_BYTES:
        raise Refused(f"{META}: larger than {MAX_META_BYTES} bytes")
    if (folder / REPORT).stat().st_size > MAX_REPORT_BYTES:
        raise Refused(f"{REPORT}: {(folder / REPORT).stat().st_size} bytes, more than the limit of {MAX_REPORT_BYTES}")
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"{META}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or set(meta) != {"version", "pr", "head_sha"}:
        raise Refused(f"{META}: expected exactly the keys version, pr, head_sha")
    if meta["version"] != FORMAT_VERSION:
        raise Refused(f"{META}: format version {meta['version']!r}, expected {FORMAT_VERSION}")
    if not isinstance(meta["pr"], int) or isinstance(meta["pr"], bool) or meta["pr"] <= 0:
        raise Refused(f"{META}: pr must be a positive integer, got {meta['pr']!r}")
    if not isinstance(meta["head_sha"], str) or not _SHA.match(meta["head_sha"]):
        raise Refused(f"{META}: head_sha must be 40 lowercase hex digits")
    return (folder / REPORT).read_bytes(), meta


def trusted_prs(event: dict[str, Any], api_url: str, repository: str, token: str) -> set[int]:
    """PR numbers the triggering run belongs to, from the event or, for forks, the API.

    GitHub leaves `workflow_run.pull_requests` empty for PRs from forks; then the open PR whose
    head is `owner:branch` of the run's head repository and whose head commit is the run's head
    commit is the one.
    """
    run = event.get("workflow_run") or {}
    head_sha = run.get("head_sha")
    numbers = {pr["number"] for pr in run.get("pull_requests") or [] if (pr.get("head") or {}).get("sha") == head_sha}
    if numbers:
        return numbers
    owner = ((run.get("head_repository") or {}).get("owner") or {}).get("login")
    branch = run.get("head_branch")
    if not (owner and branch and repository and api_url):
        return set()
    query = urllib.parse.urlencode({"state": "open", "head": f"{owner}:{branch}", "per_page": "20"})
    pulls = _get(f"{api_url.rstrip('/')}/repos/{repository}/pulls?{query}", token)
    return {pr["number"] for pr in pulls if (pr.get("head") or {}).get("sha") == head_sha}


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                                                   **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.load(response)


def head_is_current(api_url: str, repository: str, token: str, pr: int, head_sha: str | None) -> bool:
    """Whether the pull request is open and its head is still the run's commit.

    A run that finishes after a newer push must not overwrite the newer report (the event's
    `pull_requests` list does not tell: it is written when the run starts).
    """
    pull = _get(f"{api_url.rstrip('/')}/repos/{repository}/pulls/{pr}", token)
    return bool(pull.get("state") == "open" and (pull.get("head") or {}).get("sha") == head_sha)


def check(artifact: Path, event: dict[str, Any], out: Path, api_url: str, repository: str, token: str) -> tuple[int, Path]:
    """Vet the artifact against the event; return the PR number and the vetted report's path."""
    run = event.get("workflow_run")
    if not run:
        raise Refused("not a workflow_run event")
    if run.get("event") != "pull_request":
        raise Refused(f"the triggering run was a {run.get('event')!r} run, not a pull_request run")
    if not artifact.exists():
        raise NothingToPost(f"the pull-request run uploaded no report artifact (its report step failed or was "
                            f"skipped: see run {run.get('id')})")
    raw, meta = read_artifact(artifact)
    problems = check_markdown(raw)
    if problems:
        raise Refused("\n".join(problems))
    if meta["head_sha"] != run.get("head_sha"):
        raise Refused(f"{META}: head_sha {meta['head_sha']} is not the triggering run's head commit {run.get('head_sha')}")
    numbers = trusted_prs(event, api_url, repository, token)
    if not numbers:
        raise NothingToPost(f"no open pull request has head commit {run.get('head_sha')} any more (pushed again, "
                            "or closed): the newer run reports")
    if meta["pr"] not in numbers:
        raise Refused(f"{META}: pr {meta['pr']} is not the triggering run's pull request "
                      f"({', '.join(map(str, sorted(numbers)))})")
    if api_url and not head_is_current(api_url, repository, token, meta["pr"], run.get("head_sha")):
        raise NothingToPost(f"pull request #{meta['pr']} is closed or its head moved on from {run.get('head_sha')}: "
                            "the newer run reports")
    out.mkdir(parents=True, exist_ok=True)
    vetted = out / REPORT
    vetted.write_bytes(raw)
    return meta["pr"], vetted


def _set_outputs(values: dict[str, str]) -> None:
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in values.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write the report artifact (pull-request workflow)")
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--pr", type=int, required=True)
    p.add_argument("--head-sha", required=True)
    p.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("check", help="vet a downloaded artifact (comment workflow)")
    c.add_argument("--artifact", type=Path, required=True)
    c.add_argument("--event", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            pack(args.report, args.pr, args.head_sha, args.out)
            print(f"packed {args.out} for PR #{args.pr}")
            return 0
        event = json.loads(args.event.read_text(encoding="utf-8"))
        pr, vetted = check(args.artifact, event, args.out, os.environ.get("GITHUB_API_URL", "https://api.github.com"),
                           os.environ.get("GITHUB_REPOSITORY", ""), os.environ.get("GITHUB_TOKEN", ""))
    except Refused as exc:
        for line in str(exc).splitlines():
            print(f"::error title=report refused::{line}")
        return 1
    except NothingToPost as exc:
        print(f"::notice title=no report to post::{exc}")
        _set_outputs({"pr": "", "report": ""})
        return 0
    except OSError as exc:
        print(f"::error title=report gate::{exc}")
        return 1
    _set_outputs({"pr": str(pr), "report": str(vetted)})
    print(f"report for PR #{pr} accepted: {vetted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
