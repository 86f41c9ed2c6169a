"""TEST STAND-INS for remote actions under act (see README.md). Standard library only.

State lives in $STANDIN_STATE (set by the tests with `act --env`): `cache/` for the cache
archives, `artifacts/RUN_ID/NAME/` for artifacts, `cml-calls.jsonl` for the CML recorder,
`builds.jsonl` for what the build-push stand-in built and pushed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path


def state() -> Path:
    root = Path(os.environ["STANDIN_STATE"])
    root.mkdir(parents=True, exist_ok=True)
    return root


def workspace() -> Path:
    return Path(os.environ.get("GITHUB_WORKSPACE", os.getcwd()))


def set_output(**values: str) -> None:
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
        for key, value in values.items():
            if "\n" in value:
                delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
                handle.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                handle.write(f"{key}={value}\n")


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve(path: str) -> Path:
    expanded = Path(os.path.expanduser(path))
    return expanded if expanded.is_absolute() else workspace() / expanded


# ---------------------------------------------------------------- setup-python
def setup_python(version: str) -> int:
    found = ".".join(map(str, sys.version_info[:3]))
    if version and not (found == version or found.startswith(version + ".")):
        print(f"::error::stand-in setup-python: python on PATH is {found}, workflow asked for {version}")
        return 1
    print(f"stand-in setup-python: using {sys.executable} ({found})")
    set_output(**{"python-version": found, "python-path": sys.executable})
    return 0


# ---------------------------------------------------------------- cache
# As actions/cache on GitHub: a cache belongs to the ref (branch, or refs/pull/N/merge) that
# saved it; a run restores from its own ref, then its base branch (pull requests), then the
# default branch, never from a sibling branch or another pull request. A key cannot be saved
# twice within one scope (immutable); restore-keys match by prefix, newest first, scope by scope.
def _index() -> tuple[Path, dict[str, dict[str, object]]]:
    path = state() / "cache" / "index.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, (json.loads(path.read_text()) if path.is_file() else {})


def _event() -> dict:
    path = os.environ.get("GITHUB_EVENT_PATH", "")
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def cache_scope() -> str:
    """The ref a save belongs to: GITHUB_REF (act sets refs/pull/N/merge for pull requests)."""
    return os.environ.get("GITHUB_REF") or "refs/heads/" + (_event().get("repository") or {}).get("default_branch", "main")


def readable_scopes() -> list[str]:
    """Scopes this run may restore from, in GitHub's order: own ref, base branch, default branch."""
    default = "refs/heads/" + ((_event().get("repository") or {}).get("default_branch") or "main")
    base = os.environ.get("GITHUB_BASE_REF", "")
    scopes = [cache_scope(), *([f"refs/heads/{base}"] if base else []), default]
    return list(dict.fromkeys(scopes))


def _entry_key(scope: str, key: str) -> str:
    return f"{scope} {key}"


def cache_save(paths_text: str, key: str) -> int:
    index_path, index = _index()
    scope = cache_scope()
    if _entry_key(scope, key) in index:
        print(f"::warning::Failed to save: Unable to reserve cache with key {key}, another job may be creating this cache.")
        return 0
    includes = [p for p in lines(paths_text) if not p.startswith("!")]
    excludes = [resolve(p[1:]) for p in lines(paths_text) if p.startswith("!")]
    archive = state() / "cache" / (hashlib.sha256(_entry_key(scope, key).encode()).hexdigest()[:32] + ".tar")
    saved = []
    with tarfile.open(archive, "w") as tar:
        for number, raw in enumerate(includes):
            root = resolve(raw)
            if not root.exists():
                continue
            saved.append(raw)

            def keep(info: tarfile.TarInfo, root: Path = root, number: int = number) -> tarfile.TarInfo | None:
                rel = info.name.split("/", 1)[1] if "/" in info.name else ""
                target = root / rel if rel else root
                return None if any(target == ex or ex in target.parents for ex in excludes) else info

            tar.add(root, arcname=str(number), filter=keep)
    if not saved:
        archive.unlink()
        print("::warning::Path Validation Error: Path(s) specified in the action for caching do(es) not exist, "
              "hence no cache is being saved.")
        return 0
    index[_entry_key(scope, key)] = {"key": key, "scope": scope, "file": archive.name, "paths": includes,
                                     "time": time.time()}
    index_path.write_text(json.dumps(index, indent=1))
    print(f"stand-in cache: saved {', '.join(saved)} under key {key}")
    return 0


def cache_restore(paths_text: str, key: str, restore_keys: str, fail: bool, lookup: bool) -> int:
    _, index = _index()
    entry_name = None
    for scope in readable_scopes():  # the exact key first, in every readable scope
        if _entry_key(scope, key) in index:
            entry_name = _entry_key(scope, key)
            break
    for prefix in lines(restore_keys) if entry_name is None else []:
        for scope in readable_scopes():
            candidates = sorted((name for name, entry in index.items()
                                 if entry["scope"] == scope and str(entry["key"]).startswith(prefix)),
                                key=lambda name: float(index[name]["time"]), reverse=True)  # type: ignore[arg-type]
            if candidates:
                entry_name = candidates[0]
                break
        if entry_name is not None:
            break
    matched = str(index[entry_name]["key"]) if entry_name is not None else None
    set_output(**{"cache-primary-key": key, "cache-hit": str(matched == key).lower(), "cache-matched-key": matched or ""})
    if matched is None:
        print(f"stand-in cache: Cache not found for input keys: {key}")
        return 1 if fail else 0
    if lookup:
        print(f"stand-in cache: found {matched} (lookup only)")
        return 0
    assert entry_name is not None
    entry = index[entry_name]
    includes = [p for p in lines(paths_text) if not p.startswith("!")]
    with tarfile.open(state() / "cache" / str(entry["file"])) as tar:
        for member in tar.getmembers():
            number, _, rel = member.name.partition("/")
            saved_paths = list(entry["paths"])  # type: ignore[arg-type]
            raw = saved_paths[int(number)]
            if raw not in includes:
                continue
            target = resolve(raw) / rel if rel else resolve(raw)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    print(f"stand-in cache: Cache restored from key: {matched}")
    return 0


# ---------------------------------------------------------------- artifacts
def _artifact_dir(run_id: str, name: str) -> Path:
    return state() / "artifacts" / (run_id or os.environ.get("GITHUB_RUN_ID", "0")) / name


def upload(name: str, paths_text: str, if_no_files: str) -> int:
    patterns = lines(paths_text)
    files: list[Path] = []
    roots: list[Path] = []
    for pattern in patterns:
        full = str(resolve(pattern.rstrip("/")))
        if "*" in full:  # the folder holding the first wildcard segment, as upload-artifact does
            roots.append(Path(full.split("*", 1)[0].rsplit("/", 1)[0]))
        else:
            roots.append(Path(full) if Path(full).is_dir() else Path(full).parent)
        for match in glob.glob(full, recursive=True):
            path = Path(match)
            files += [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path] if path.is_file() else []
    if not files:
        message = f"No files were found with the provided path: {paths_text.strip()}. No artifacts will be uploaded."
        print(f"::{'error' if if_no_files == 'error' else 'warning'}::{message}")
        return 1 if if_no_files == "error" else 0
    root = Path(os.path.commonpath([str(r) for r in roots]))
    dest = _artifact_dir("", name)
    if dest.exists():
        shutil.rmtree(dest)
    for file in files:
        target = dest / file.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    print(f"stand-in upload-artifact: {len(files)} file(s) as {name!r}")
    set_output(**{"artifact-id": str(abs(hash(name)) % 100000)})
    return 0


def download(name: str, path: str, run_id: str) -> int:
    source = _artifact_dir(run_id, name)
    if not source.is_dir():
        print(f"::error::Unable to download artifact(s): Artifact not found for name: {name}")
        return 1
    dest = resolve(path)
    shutil.copytree(source, dest, dirs_exist_ok=True, symlinks=True)
    print(f"stand-in download-artifact: {name!r} of run {run_id or 'this run'} to {dest}")
    set_output(**{"download-path": str(dest)})
    return 0


def attest(name: str, digest: str, push: str) -> int:
    """As actions/attest-build-provenance: attestations need a public repository, or a private
    one on GitHub Enterprise Cloud (STANDIN_ENTERPRISE_CLOUD=true here); elsewhere it fails."""
    repository = _event().get("repository") or {}
    public = repository.get("visibility") == "public" or repository.get("private") is False
    if not public and os.environ.get("STANDIN_ENTERPRISE_CLOUD") != "true":
        print("::error::Failed to persist attestation: Feature not available for the "
              f"{repository.get('full_name', 'private')} repository (artifact attestations need a public "
              "repository or GitHub Enterprise Cloud)")
        return 1
    if not name or not digest.startswith("sha256:"):
        print(f"::error::stand-in attest: need subject-name and a sha256 subject-digest, got {name!r} {digest!r}")
        return 1
    with open(state() / "attestations.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"subject-name": name, "subject-digest": digest, "push-to-registry": push}) + "\n")
    print(f"stand-in attest: {name}@{digest}")
    return 0


# ---------------------------------------------------------------- docker/metadata-action
# Default priorities of docker/metadata-action's tag types: the highest gives `version`.
TAG_PRIORITY = {"schedule": 1000, "semver": 900, "pep440": 900, "match": 800, "edge": 700, "ref": 600, "raw": 200, "sha": 100}


def _attrs(rule: str) -> dict[str, str]:
    attrs = {}
    for part in rule.split(","):
        key, _, value = part.strip().partition("=")
        attrs[key.strip()] = value.strip()
    return attrs


def _items(text: str) -> list[str]:
    """A list input as the Docker actions read it: lines (and commas), `#` lines are comments."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def metadata_tags(images: list[str], rules: list[str], sha: str, ref: str) -> tuple[str, list[str]]:
    """(version, ["image:tag", ...]) for the rules docker/metadata-action would apply here."""
    found: list[tuple[int, int, str]] = []
    for number, rule in enumerate(rules):
        attrs = _attrs(rule)
        kind = attrs.get("type", "raw")
        if attrs.get("enable", "true") == "false":
            continue
        prefix, suffix = attrs.get("prefix"), attrs.get("suffix", "")
        if kind == "sha":
            value = sha if attrs.get("format") == "long" else sha[:7]
            prefix = "sha-" if prefix is None else prefix
        elif kind == "raw":
            value = attrs.get("value", "")
        elif kind == "ref":
            event = attrs.get("event", "")
            if event == "branch" and ref.startswith("refs/heads/"):
                value = ref.removeprefix("refs/heads/")
            elif event == "tag" and ref.startswith("refs/tags/"):
                value = ref.removeprefix("refs/tags/")
            elif event == "pr" and ref.startswith("refs/pull/"):
                value, prefix = ref.split("/")[2], "pr-" if prefix is None else prefix
            else:
                continue
        else:
            raise SystemExit(f"::error::stand-in metadata: tag type {kind!r} is not implemented by the stand-in")
        value = f"{prefix or ''}{value}{suffix}".replace("/", "-")
        if value:
            found.append((-int(attrs.get("priority", TAG_PRIORITY[kind])), number, value))
    values = list(dict.fromkeys(value for _, _, value in sorted(found)))
    return (values[0] if values else ""), [f"{image}:{value}" for image in images for value in values]


def metadata_labels(version: str, sha: str, extra: list[str], now: dt.datetime) -> list[str]:
    """The default OCI labels, then the given ones (a later key wins), sorted by key."""
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    url = f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{repository}" if repository else ""
    defaults = [f"org.opencontainers.image.title={repository.rsplit('/', 1)[-1]}",
                "org.opencontainers.image.description=",  # from the GitHub API, which the stand-in cannot read
                f"org.opencontainers.image.url={url}", f"org.opencontainers.image.source={url}",
                f"org.opencontainers.image.version={version}",
                f"org.opencontainers.image.created={now.strftime('%Y-%m-%dT%H:%M:%S.')}{now.microsecond // 1000:03d}Z",
                f"org.opencontainers.image.revision={sha}", "org.opencontainers.image.licenses="]
    merged: dict[str, str] = {}
    for label in [*defaults, *extra]:
        key, _, value = label.partition("=")
        if key.strip():
            merged[key.strip()] = value
    return [f"{key}={merged[key]}" for key in sorted(merged)]


def metadata() -> int:
    env = os.environ.get
    if "latest=true" in env("IN_FLAVOR", ""):
        print("::error::stand-in metadata: flavor latest=true is not implemented")
        return 1
    images = _items(env("IN_IMAGES", ""))
    sha, ref = env("GITHUB_SHA", ""), env("GITHUB_REF", "")
    version, tags = metadata_tags(images, _items(env("IN_TAGS", "")), sha, ref)
    labels = metadata_labels(version, sha, _items(env("IN_LABELS", "")), dt.datetime.now(dt.UTC))
    annotations = [f"manifest:{label}" for label in metadata_labels(version, sha, _items(env("IN_ANNOTATIONS", "")),
                                                                     dt.datetime.now(dt.UTC))]
    print("stand-in metadata: tags\n  " + "\n  ".join(tags) + "\nlabels\n  " + "\n  ".join(labels))
    set_output(version=version, tags=env("IN_SEP_TAGS", "\n").join(tags), labels=env("IN_SEP_LABELS", "\n").join(labels),
               annotations="\n".join(annotations),
               json=json.dumps({"tags": tags, "labels": dict(label.split("=", 1) for label in labels)}))
    return 0


# ---------------------------------------------------------------- docker/build-push-action
def buildkit_docker() -> tuple[str, dict[str, str]]:
    """A docker client that builds with BuildKit on the local engine (buildx, else the classic client)."""
    for name in ("docker", "/usr/bin/docker"):
        path = shutil.which(name)
        if not path:
            continue
        if subprocess.run([path, "buildx", "version"], capture_output=True).returncode == 0:
            return path, {}
        version = subprocess.run([path, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True).stdout
        if version and int(version.split(".")[0]) < 23:
            return path, {"DOCKER_BUILDKIT": "1"}
    raise SystemExit("::error::stand-in build-push: no docker client with BuildKit")


def build_push() -> int:
    env = os.environ.get
    context = resolve(env("IN_CONTEXT", ".") or ".")
    tags = [t.strip() for line in _items(env("IN_TAGS", "")) for t in line.split(",") if t.strip()]
    docker, extra_env = buildkit_docker()
    iidfile = state() / f"iid-{uuid.uuid4().hex}"
    cmd = [docker, "build", "--iidfile", str(iidfile), f"--pull={'true' if env('IN_PULL') == 'true' else 'false'}"]
    if env("IN_FILE"):
        cmd += ["--file", str(resolve(env("IN_FILE", "")))]
    if env("IN_NO_CACHE") == "true":
        cmd.append("--no-cache")
    if env("IN_TARGET"):
        cmd += ["--target", env("IN_TARGET", "")]
    for secret in _items(env("IN_SECRET_FILES", "")):
        secret_id, _, src = secret.strip('"').partition("=")
        cmd += ["--secret", f"id={secret_id},src={src.strip(chr(34))}"]
    for arg in _items(env("IN_BUILD_ARGS", "")):
        cmd += ["--build-arg", arg]
    for label in _items(env("IN_LABELS", "")):
        cmd += ["--label", label]
    for tag in tags:
        cmd += ["--tag", tag]
    print("stand-in build-push: " + " ".join(cmd[:2]) + f" ... {context}", flush=True)
    if subprocess.run([*cmd, str(context)], env={**os.environ, **extra_env}).returncode != 0:
        print("::error::stand-in build-push: docker build failed")
        return 1
    image_id = iidfile.read_text().strip()
    iidfile.unlink()
    digest = ""
    if env("IN_PUSH") == "true":
        for tag in tags:
            if subprocess.run([docker, "push", tag], capture_output=True, text=True).returncode != 0:
                print(f"::error::stand-in build-push: docker push {tag} failed")
                return 1
        name = tags[0].rsplit(":", 1)[0] if tags and ":" in tags[0].rsplit("/", 1)[-1] else (tags[0] if tags else "")
        repo_digests = subprocess.run([docker, "image", "inspect", "--format", "{{json .RepoDigests}}", image_id],
                                      capture_output=True, text=True, check=True).stdout
        digest = next((d.partition("@")[2] for d in json.loads(repo_digests) if d.startswith(name + "@")), "")
        if not digest:
            print(f"::error::stand-in build-push: no digest for {name} after the push")
            return 1
    with open(state() / "builds.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"context": str(context), "tags": tags, "imageid": image_id, "digest": digest}) + "\n")
    print(f"stand-in build-push: {image_id} pushed as {digest or '(not pushed)'}")
    set_output(imageid=image_id, digest=digest,
               metadata=json.dumps({"containerimage.config.digest": image_id, "containerimage.digest": digest,
                                    "image.name": ",".join(tags)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["setup-python", "cache-restore", "cache-save", "upload", "download", "attest",
                                            "metadata", "build-push"])
    parser.add_argument("--version", default="")
    args = parser.parse_args(argv)
    env = os.environ.get
    if args.command == "setup-python":
        return setup_python(args.version)
    if args.command == "cache-save":
        return cache_save(env("IN_PATH", ""), env("IN_KEY", ""))
    if args.command == "cache-restore":
        return cache_restore(env("IN_PATH", ""), env("IN_KEY", ""), env("IN_RESTORE_KEYS", ""),
                             env("IN_FAIL") == "true", env("IN_LOOKUP") == "true")
    if args.command == "metadata":
        return metadata()
    if args.command == "build-push":
        return build_push()
    if args.command == "attest":
        return attest(env("IN_NAME", ""), env("IN_DIGEST", ""), env("IN_PUSH", ""))
    if args.command == "upload":
        return upload(env("IN_NAME", "artifact"), env("IN_PATH", ""), env("IN_IF_NO_FILES", "warn"))
    return download(env("IN_NAME", ""), env("IN_PATH", "."), env("IN_RUN_ID", ""))


if __name__ == "__main__":
    sys.exit(main())
