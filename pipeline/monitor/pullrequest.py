"""One retraining pull request per model, through the GitHub REST API (no `git push`).

The PR lives on a fixed branch, `mlops/retrain/<project>`, found again on every run:
- retraining warranted: the branch is (re)made as one commit on the default branch's head and
  the open PR's body is replaced (or a PR is opened, unless one closed within `monitor.cooldown`);
- healthy: an open PR is closed with a comment saying why, and its branch deleted;
- not enough data: nothing changes.

The commit is a data window: the newly labelled rows appended to `<monitor.data_dir>/train.csv`
(which `data.path` then names) and the window's rows as the new drift reference
(`<monitor.data_dir>/reference.csv`, named by `data.reference`), so after the merge the model
is trained on that data and the same data no longer counts as drift.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.monitor import seconds

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from pipeline.config import Config

BODY_LIMIT = 60_000  # GitHub refuses bodies above 65,536 characters
SETTING = ('Settings → Actions → General → Workflow permissions → "Allow GitHub Actions to create and approve '
           'pull requests"')


class GitHubError(PipelineError):
    """A GitHub API answer other than 2xx; names the request, so an unhandled one is a clear error."""

    def __init__(self, status: int, message: str, request: str = "") -> None:
        super().__init__(f"GitHub API {request}: {status} {message}".replace(" : ", ": "), exit_code=2)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Client:
    """A small GitHub REST client (urllib): JSON in and out, errors as GitHubError."""

    api: str
    repository: str
    token: str

    @classmethod
    def from_environment(cls) -> Client:
        repository = os.environ.get("GITHUB_REPOSITORY", "")
        token = os.environ.get("RETRAIN_TOKEN") or os.environ.get("GITHUB_TOKEN") or ""
        if not repository or not token:
            missing = "GITHUB_REPOSITORY" if not repository else "GITHUB_TOKEN (or RETRAIN_TOKEN)"
            raise PipelineError(f"monitor --open-pr: {missing} is not set")
        return cls(os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"), repository, token)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, Any] | None = None) -> tuple[Any, dict[str, str]]:
        url = f"{self.api}/repos/{self.repository}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json", "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json", "User-Agent": "mlops-monitor"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return (json.loads(raw) if raw else None), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = str(json.loads(raw).get("message", ""))
            except ValueError:
                message = raw.decode(errors="replace")[:200]
            raise GitHubError(exc.code, message or exc.reason, f"{method} {url.split('?')[0]}") from None
        except urllib.error.URLError as exc:
            raise PipelineError(f"monitor: cannot reach the GitHub API at {self.api}: {exc.reason}") from None

    def pages(self, path: str, query: dict[str, Any]) -> Iterator[Any]:
        """Every item of a listing, following the `Link: <...>; rel="next"` header."""
        page = 1
        while True:
            items, headers = self.call("GET", path, query={**query, "per_page": 100, "page": page})
            yield from items
            if 'rel="next"' not in (headers.get("Link") or headers.get("link") or ""):
                return
            page += 1


def branch_name(config: Config) -> str:
    return f"mlops/retrain/{config.project}"


def sync(client: Client, config: Config, result: dict[str, Any], body: str, files: dict[str, str],
         now: float | None = None) -> dict[str, Any]:
    """Bring the retraining PR in line with the verdict; returns what was done."""
    now = time.time() if now is None else now
    branch = branch_name(config)
    owner = client.repository.split("/")[0]
    opened = list(client.pages("/pulls", {"state": "open", "head": f"{owner}:{branch}"}))
    verdict = result["verdict"]
    if verdict == "healthy":
        for pr in opened:
            _close(client, pr["number"], branch, result["headline"])
        return {"action": "closed" if opened else "none", "number": opened[0]["number"] if opened else None}
    if verdict != "retrain":
        return {"action": "none", "number": opened[0]["number"] if opened else None, "note": "not enough data"}
    title = f"Retrain {config.project}: {result['headline']}"[:250]
    text = body if len(body) <= BODY_LIMIT else body[:BODY_LIMIT] + "\n\n… (cut; the full report is outputs/monitor.md)\n"
    if opened:
        pr = opened[0]
        _commit_to_branch(client, branch, files, message=title)
        client.call("PATCH", f"/pulls/{pr['number']}", {"title": title, "body": text})
        return {"action": "updated", "number": pr["number"], "url": pr.get("html_url")}
    last = _last_closed(client, owner, branch)
    if last is not None and now - last < seconds(config.monitor.cooldown):
        return {"action": "cooldown", "number": None,
                "note": f"a retraining PR closed {int((now - last) // 3600)} h ago (monitor.cooldown {config.monitor.cooldown})"}
    base = _commit_to_branch(client, branch, files, message=title)
    try:
        pr, _ = client.call("POST", "/pulls", {"title": title, "head": branch, "base": base, "body": text})
    except GitHubError as exc:
        _delete_branch(client, branch)
        if exc.status == 403:
            raise PipelineError(
                f"monitor --open-pr: GitHub refused to open the pull request in {client.repository} ({exc}). "
                f"Enable the repository setting {SETTING}, or give the workflow a RETRAIN_TOKEN secret (a GitHub "
                f"App or fine-grained token with contents and pull-requests write). Branch {branch} was removed "
                f"again.") from None
        raise PipelineError(f"monitor --open-pr: opening the pull request in {client.repository} failed ({exc}); "
                            f"branch {branch} was removed again") from None
    return {"action": "opened", "number": pr["number"], "url": pr.get("html_url")}


def _commit_to_branch(client: Client, branch: str, files: dict[str, str], message: str) -> str:
    """One commit with `files` on the default branch's head; the branch made or force-moved to it.
    Returns the default branch's name."""
    try:
        repo, _ = client.call("GET", "")
        base = repo["default_branch"]
        ref, _ = client.call("GET", f"/git/ref/heads/{urllib.parse.quote(base)}")
        head = ref["object"]["sha"]
        commit, _ = client.call("GET", f"/git/commits/{head}")
        tree, _ = client.call("POST", "/git/trees", {"base_tree": commit["tree"]["sha"], "tree": [
            {"path": path, "mode": "100644", "type": "blob", "content": content} for path, content in sorted(files.items())]})
        new, _ = client.call("POST", "/git/commits", {"message": message, "tree": tree["sha"], "parents": [head]})
        try:
            client.call("POST", "/git/refs", {"ref": f"refs/heads/{branch}", "sha": new["sha"]})
            return base
        except GitHubError as exc:
            if exc.status != 422:  # 422: the branch exists (the open PR's, or left over): move it
                raise
        client.call("PATCH", f"/git/refs/heads/{branch}", {"sha": new["sha"], "force": True})
        return base
    except GitHubError as exc:
        raise PipelineError(f"monitor --open-pr: writing branch {branch} in {client.repository} failed ({exc})") from None


def _close(client: Client, number: int, branch: str, headline: str) -> None:
    try:
        client.call("POST", f"/issues/{number}/comments", {"body": f"The monitor's signal cleared ({headline}); "
                                                                   f"closing this retraining pull request."})
        client.call("PATCH", f"/pulls/{number}", {"state": "closed"})
    except GitHubError as exc:
        raise PipelineError(f"monitor --open-pr: closing pull request #{number} failed ({exc})") from None
    _delete_branch(client, branch)


def _delete_branch(client: Client, branch: str) -> None:
    try:
        client.call("DELETE", f"/git/refs/heads/{branch}")
    except GitHubError as exc:
        if exc.status not in (404, 422):
            raise PipelineError(f"monitor --open-pr: deleting branch {branch} failed ({exc})") from None


def _last_closed(client: Client, owner: str, branch: str) -> float | None:
    """When the latest retraining PR was closed or merged (unix seconds), if any."""
    query = {"state": "closed", "head": f"{owner}:{branch}", "sort": "updated", "direction": "desc"}
    times = [datetime.fromisoformat(pr["closed_at"].replace("Z", "+00:00")).timestamp()
             for pr in client.pages("/pulls", query) if pr.get("closed_at")]
    return max(times, default=None)


def window_files(config: Config, frame: pd.DataFrame, config_file: Path) -> dict[str, str]:
    """The PR's change, as repository paths -> new content (see the module docstring)."""
    import pandas as pd

    from pipeline.config import resolve
    from pipeline.data import read_table

    settings, target, id_column = config.monitor, config.data.target, config.data.id_column
    columns = list(config.validate_.columns)
    current = read_table(resolve(config, config.data.path), config)
    order = [c for c in current.columns if c in columns] or columns
    live = frame.reindex(columns=order)
    labelled = live[live[target].notna()]
    if id_column and id_column in current.columns:
        labelled = labelled[~labelled[id_column].astype(str).isin(set(current[id_column].astype(str)))]
    combined = pd.concat([current[order], labelled], ignore_index=True).drop_duplicates()
    if settings.max_train_rows:
        combined = combined.tail(settings.max_train_rows)
    train = (settings.data_dir / "train.csv").as_posix()
    reference = (settings.data_dir / "reference.csv").as_posix()
    text = set_data_paths(config_file.read_text(encoding="utf-8"), train, reference)
    return {train: combined.to_csv(index=False), reference: live.to_csv(index=False), config_file.name: text}


def set_data_paths(text: str, path: str, reference: str) -> str:
    """mlops.yaml with `data.path` and `data.reference` set, comments and layout kept."""
    import yaml

    root = yaml.compose(text)
    data = next((v for k, v in root.value if k.value == "data"), None) if isinstance(root, yaml.MappingNode) else None
    if not isinstance(data, yaml.MappingNode):
        raise PipelineError("monitor --open-pr: mlops.yaml has no data: section to point at the new window")
    nodes = {k.value: (k, v) for k, v in data.value}
    edits: list[tuple[int, int, str]] = []
    key, value = nodes["path"]
    edits.append((value.start_mark.index, value.end_mark.index, path))
    if "reference" in nodes:
        _, ref = nodes["reference"]
        edits.append((ref.start_mark.index, ref.end_mark.index, reference))
    else:
        line_end = text.index("\n", value.end_mark.index) + 1 if "\n" in text[value.end_mark.index:] else len(text)
        edits.append((line_end, line_end, " " * key.start_mark.column + f"reference: {reference}\n"))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text
