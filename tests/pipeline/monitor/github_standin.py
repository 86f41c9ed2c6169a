"""A LOCAL STAND-IN for the part of the GitHub REST API `mlops monitor --open-pr` uses; not GitHub.

It speaks the same endpoints, status codes and pagination as docs.github.com/rest describes:
repository (GET /repos/{o}/{r}), git database (GET /git/ref/heads/{b}, POST /git/refs, PATCH
and DELETE /git/refs/heads/{b}, GET and POST /git/commits, POST /git/trees with `base_tree`
and inline `content`), pulls (GET with state/head/sort/direction/per_page/page and a `Link`
header, POST 201/422/403, PATCH) and POST /issues/{n}/comments. A token is required (401
otherwise). `deny_pull_requests` answers POST /pulls as GitHub does when the repository setting
"Allow GitHub Actions to create and approve pull requests" is off. `page_cap` shrinks the page
size below the caller's per_page, so pagination is exercised.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FORBIDDEN = "GitHub Actions is not permitted to create or approve pull requests."


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Repo:
    owner: str = "acme"
    name: str = "penguins"
    token: str = "test-token"
    default_branch: str = "main"
    deny_pull_requests: bool = False
    page_cap: int = 100
    trees: dict[str, dict[str, str]] = field(default_factory=dict)
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        tree = _sha("tree", {})
        self.trees[tree] = {}
        root = _sha("commit", tree, "initial")
        self.commits[root] = {"tree": tree, "parents": [], "message": "initial"}
        self.refs[f"heads/{self.default_branch}"] = root

    def files(self, branch: str) -> dict[str, str]:
        return self.trees[self.commits[self.refs[f"heads/{branch}"]]["tree"]]


class _Handler(BaseHTTPRequestHandler):
    repo: Repo
    base: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"message": message, "documentation_url": "https://docs.github.com/rest",
                            "status": str(status)})

    def _handle(self, method: str) -> None:
        repo = self.repo
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        repo.requests.append((method, parts.path))
        if self.headers.get("Authorization") != f"Bearer {repo.token}":
            return self._error(401, "Bad credentials")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        prefix = f"/repos/{repo.owner}/{repo.name}"
        if not parts.path.startswith(prefix):
            return self._error(404, "Not Found")
        path = parts.path[len(prefix):]
        for pattern, handler in ROUTES:
            match = re.fullmatch(pattern, f"{method} {path}")
            if match:
                return handler(self, body, query, *match.groups())
        return self._error(404, "Not Found")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- endpoints ---
    def get_repo(self, body: Any, query: Any) -> None:
        self._send(200, {"full_name": f"{self.repo.owner}/{self.repo.name}", "default_branch": self.repo.default_branch})

    def get_ref(self, body: Any, query: Any, branch: str) -> None:
        sha = self.repo.refs.get(f"heads/{branch}")
        if sha is None:
            return self._error(404, "Not Found")
        self._send(200, {"ref": f"refs/heads/{branch}", "object": {"sha": sha, "type": "commit"}})

    def create_ref(self, body: Any, query: Any) -> None:
        name = body["ref"].removeprefix("refs/")
        if name in self.repo.refs:
            return self._error(422, "Reference already exists")
        if body["sha"] not in self.repo.commits:
            return self._error(422, "Object does not exist")
        self.repo.refs[name] = body["sha"]
        self._send(201, {"ref": body["ref"], "object": {"sha": body["sha"], "type": "commit"}})

    def update_ref(self, body: Any, query: Any, branch: str) -> None:
        name = f"heads/{branch}"
        if name not in self.repo.refs:
            return self._error(422, "Reference does not exist")
        if not body.get("force") and self.repo.refs[name] not in self.repo.commits[body["sha"]]["parents"]:
            return self._error(422, "Update is not a fast forward")
        self.repo.refs[name] = body["sha"]
        self._send(200, {"ref": f"refs/{name}", "object": {"sha": body["sha"], "type": "commit"}})

    def delete_ref(self, body: Any, query: Any, branch: str) -> None:
        if self.repo.refs.pop(f"heads/{branch}", None) is None:
            return self._error(422, "Reference does not exist")
        self._send(204)

    def get_commit(self, body: Any, query: Any, sha: str) -> None:
        commit = self.repo.commits.get(sha)
        if commit is None:
            return self._error(404, "Not Found")
        self._send(200, {"sha": sha, "tree": {"sha": commit["tree"]}, "message": commit["message"],
                         "parents": [{"sha": p} for p in commit["parents"]]})

    def create_tree(self, body: Any, query: Any) -> None:
        files = dict(self.repo.trees.get(body.get("base_tree", ""), {}))
        for entry in body["tree"]:
            files[entry["path"]] = entry["content"]
        sha = _sha("tree", files)
        self.repo.trees[sha] = files
        self._send(201, {"sha": sha, "tree": [{"path": p, "type": "blob"} for p in sorted(files)], "truncated": False})

    def create_commit(self, body: Any, query: Any) -> None:
        sha = _sha("commit", body["tree"], body["parents"], body["message"], time.time())
        self.repo.commits[sha] = {"tree": body["tree"], "parents": body["parents"], "message": body["message"]}
        self._send(201, {"sha": sha, "tree": {"sha": body["tree"]}, "parents": [{"sha": p} for p in body["parents"]]})

    def list_pulls(self, body: Any, query: Any) -> None:
        state, head = query.get("state", "open"), query.get("head")
        found = [p for p in self.repo.pulls if state == "all" or p["state"] == state]
        if head:
            found = [p for p in found if f"{self.repo.owner}:{p['head']['ref']}" == head]
        key = "updated_at" if query.get("sort") == "updated" else "created_at"
        found.sort(key=lambda p: p[key], reverse=query.get("direction", "desc") == "desc")
        size = min(int(query.get("per_page", 30)), self.repo.page_cap, 100)
        page = int(query.get("page", 1))
        last = max(1, -(-len(found) // size))
        links = []
        if page < last:
            other = {k: v for k, v in query.items() if k != "page"}
            url = f"{self.base}/repos/{self.repo.owner}/{self.repo.name}/pulls?" + "&".join(f"{k}={v}" for k, v in other.items())
            links = [f'<{url}&page={page + 1}>; rel="next"', f'<{url}&page={last}>; rel="last"']
        self._send(200, found[(page - 1) * size: page * size], {"Link": ", ".join(links)} if links else None)

    def create_pull(self, body: Any, query: Any) -> None:
        repo = self.repo
        if repo.deny_pull_requests:
            return self._error(403, FORBIDDEN)
        if f"heads/{body['head']}" not in repo.refs:
            return self._error(422, "Validation Failed")
        if any(p["state"] == "open" and p["head"]["ref"] == body["head"] for p in repo.pulls):
            return self._error(422, f"A pull request already exists for {repo.owner}:{body['head']}.")
        now = _iso(time.time())
        number = len(repo.pulls) + 1
        pr = {"number": number, "state": "open", "title": body["title"], "body": body.get("body", ""),
              "head": {"ref": body["head"]}, "base": {"ref": body["base"]}, "created_at": now, "updated_at": now,
              "closed_at": None, "html_url": f"https://github.example/{repo.owner}/{repo.name}/pull/{number}"}
        repo.pulls.append(pr)
        self._send(201, pr)

    def update_pull(self, body: Any, query: Any, number: str) -> None:
        pr = next((p for p in self.repo.pulls if p["number"] == int(number)), None)
        if pr is None:
            return self._error(404, "Not Found")
        for key in ("title", "body", "state"):
            if key in body:
                pr[key] = body[key]
        pr["updated_at"] = _iso(time.time())
        if body.get("state") == "closed":
            pr["closed_at"] = pr["updated_at"]
        self._send(200, pr)

    def create_comment(self, body: Any, query: Any, number: str) -> None:
        comment = {"id": len(self.repo.comments) + 1, "issue": int(number), "body": body["body"]}
        self.repo.comments.append(comment)
        self._send(201, comment)


ROUTES = [
    (r"GET ", _Handler.get_repo),
    (r"GET /git/ref/heads/(.+)", _Handler.get_ref),
    (r"POST /git/refs", _Handler.create_ref),
    (r"PATCH /git/refs/heads/(.+)", _Handler.update_ref),
    (r"DELETE /git/refs/heads/(.+)", _Handler.delete_ref),
    (r"GET /git/commits/([0-9a-f]+)", _Handler.get_commit),
    (r"POST /git/trees", _Handler.create_tree),
    (r"POST /git/commits", _Handler.create_commit),
    (r"GET /pulls", _Handler.list_pulls),
    (r"POST /pulls", _Handler.create_pull),
    (r"PATCH /pulls/([0-9]+)", _Handler.update_pull),
    (r"POST /issues/([0-9]+)/comments", _Handler.create_comment),
]


class StandIn:
    """The stand-in on a free loopback port; `env` is what the monitor needs to talk to it."""

    def __init__(self, repo: Repo | None = None) -> None:
        self.repo = repo or Repo()
        handler = type("Handler", (_Handler,), {"repo": self.repo})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {"GITHUB_API_URL": self.url, "GITHUB_REPOSITORY": f"{self.repo.owner}/{self.repo.name}",
                "GITHUB_TOKEN": self.repo.token}

    def open_pulls(self) -> list[dict[str, Any]]:
        return [p for p in self.repo.pulls if p["state"] == "open"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
