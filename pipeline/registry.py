"""The durable model store: promoted models as OCI artifacts in a container registry, all of it.

`MLOPS_MODEL_REGISTRY` names the repository (`host[:port]/path`, e.g. `ghcr.io/you/repo-model`
or `127.0.0.1:5000/team/model`); on GitHub Actions it defaults to `ghcr.io/<owner>/<repo>/model`
(lowercased), so two repositories of one owner never share a store, and `off` turns it off.
Each promoted model is one immutable artifact (the MLflow model directory as one layer, its
lineage as manifest annotations) tagged `v<N>`: N is the largest version tag there plus one, and
tags are never deleted, so a number is never reused. Aliases (`challenger`, `staging`,
`champion`) are tags moved by PUTting a version's raw manifest bytes again under the alias (same
bytes, same digest; nothing is re-uploaded). Every champion is also recorded under
`champion-h<N>`, the history `mlops registry rollback` returns along.

Why compare-and-swap with a settle pause: the OCI distribution API has no conditional write, so
an alias moves in four steps: read it and compare with the digest expected, PUT, wait
`SETTLE_SECONDS`, read it again. Of movers that raced past the first read, only the last PUT
survives, and every other one finds a digest that is not its own in the last read and fails
naming it (Fischer's mutual exclusion; it holds while a mover's read-to-PUT gap, one HTTP
request, is shorter than the pause).

Credentials: `MLOPS_MODEL_REGISTRY_USERNAME` / `MLOPS_MODEL_REGISTRY_PASSWORD`, else the Docker
config (`docker login`). A loopback registry is spoken to over plain HTTP, any other over HTTPS
(`MLOPS_MODEL_REGISTRY_INSECURE=1` forces HTTP). Every failure is one PipelineError naming the
repository; nothing here sleeps and retries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

ENV = "MLOPS_MODEL_REGISTRY"
CHALLENGER, STAGING, CHAMPION = "challenger", "staging", "champion"
ALIASES = (CHALLENGER, STAGING, CHAMPION)
SETTLE_SECONDS = 1.0
TIMEOUT_SECONDS = 30.0
READ_RETRY_SECONDS = (0.2, 0.5)  # pauses before a read answered 5xx is tried again (Client.request)
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
CONFIG_TYPE = "application/vnd.mlops.model.config.v1+json"
ANNOTATION = "dev.mlops."  # our manifest annotations: dev.mlops.metrics, dev.mlops.git-sha, ...
_VERSION_TAG = re.compile(r"^v([0-9]+)$")
_LOOPBACK = re.compile(r"^(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?$")


@dataclass(frozen=True)
class Repository:
    """Where the models live: `host` (with port) and the repository `path` on it."""

    host: str
    path: str
    insecure: bool

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"

    def ref(self, tag_or_digest: str) -> str:
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self}{sep}{tag_or_digest}"


@dataclass(frozen=True)
class Version:
    """One model version: its number, digest and manifest annotations (lineage)."""

    number: int
    digest: str
    annotations: dict[str, str]


def parse(value: str) -> Repository:
    """`host[:port]/path` -> Repository; a clear error naming the variable otherwise."""
    host, _, path = value.strip().partition("/")
    valid_path = re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", path)
    if not path or not valid_path or not ("." in host or ":" in host or host == "localhost"):
        raise PipelineError(f"{ENV}={value!r}: expected host[:port]/repository with a lowercase path, "
                            "e.g. ghcr.io/you/model or 127.0.0.1:5000/team/model")
    insecure = bool(_LOOPBACK.match(host)) or os.environ.get(f"{ENV}_INSECURE") == "1"
    return Repository(host=host, path=path, insecure=insecure)


def configured() -> Repository | None:
    """The repository named by MLOPS_MODEL_REGISTRY (on GitHub Actions, derived from the
    repository when unset or empty), or None when there is none or it is `off`."""
    value = os.environ.get(ENV, "").strip() or github_default()
    return parse(value) if value and value != "off" else None


def github_default() -> str:
    """`ghcr.io/<owner>/<repo>/model` on GitHub Actions (OCI names are lowercase), else ''."""
    repository = os.environ.get("GITHUB_REPOSITORY", "").strip()
    if os.environ.get("GITHUB_ACTIONS") != "true" or "/" not in repository:
        return ""
    return f"ghcr.io/{repository.lower()}/model"


# --- the connection -------------------------------------------------------------------------------

class Client:
    """An ORAS client for one repository that fails fast: connection errors, refused credentials
    and HTTP errors become one PipelineError (ORAS itself retries with sleeps of up to 83 s)."""

    def __init__(self, repo: Repository) -> None:
        import oras.provider
        import requests

        self.repo = repo
        self.base = f"{'http' if repo.insecure else 'https'}://{repo.host}"
        try:
            challenge = requests.get(f"{self.base}/v2/", timeout=TIMEOUT_SECONDS).headers.get("WWW-Authenticate", "")
        except requests.RequestException as exc:
            raise self.error("unreachable", exc) from None
        backend = "basic" if challenge.lower().startswith("basic") else "token"

        class _FailFast(oras.provider.Registry):
            do_request = oras.provider.Registry.do_request.__wrapped__  # no sleep-and-retry loop

        self.oras = _FailFast(hostname=repo.host, insecure=repo.insecure, auth_backend=backend)
        user, password = os.environ.get(f"{ENV}_USERNAME"), os.environ.get(f"{ENV}_PASSWORD")
        if user and password:
            self.oras.auth.set_basic_auth(user, password)
        else:
            self.oras.auth.load_configs(self.oras.get_container(repo.ref("latest")))
        self.request("GET", f"{self.base}/v2/", ok=(200,))  # credentials checked before anything moves

    def error(self, what: str, exc: Exception | str) -> PipelineError:
        detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return PipelineError(f"model registry {self.repo} ({ENV}): {what}: {detail}")

    def request(self, method: str, url: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """One registry call. A read answered 5xx is tried again after READ_RETRY_SECONDS: the
        registry's filesystem store answers 500 to a read of a tag another client is writing
        (seen as two promotions raced), and a read changes nothing."""
        import requests

        for pause in (*READ_RETRY_SECONDS, None):
            try:
                response = self.oras.do_request(url, method, **kwargs)
            except (requests.RequestException, ValueError) as exc:
                raise self.error(f"{method} {url}", exc) from None
            if pause is None or method not in ("GET", "HEAD") or response.status_code < 500:
                break
            time.sleep(pause)
        if response.status_code in (401, 403):
            raise self.error("credentials refused", f"HTTP {response.status_code} for {method} {url}; set "
                             f"{ENV}_USERNAME/{ENV}_PASSWORD or `docker login {self.repo.host}`")
        if response.status_code not in ok:
            raise self.error(f"{method} {url}", f"HTTP {response.status_code} {response.text[:300]}")
        return response

    def manifest_url(self, ref: str) -> str:
        return f"{self.base}/v2/{self.repo.path}/manifests/{ref}"


def connect(repo: Repository) -> Client:
    """A checked connection: the registry answers and accepts the credentials."""
    return Client(repo)


# --- reading ------------------------------------------------------------------------------------

def tags(client: Client) -> list[str]:
    """Every tag of the repository (none when it does not exist yet), following pagination."""
    url: str | None = f"{client.base}/v2/{client.repo.path}/tags/list?n=1000"
    found: list[str] = []
    while url:
        response = client.request("GET", url, ok=(200, 404))
        if response.status_code == 404:
            return found
        found += response.json().get("tags") or []
        link = response.headers.get("Link", "")
        url = client.base + link.split(";")[0].strip("<> ") if link else None
    return found


def version_numbers(client: Client) -> list[int]:
    return sorted(int(m.group(1)) for tag in tags(client) if (m := _VERSION_TAG.match(tag)))


def resolve(client: Client, ref: str) -> str | None:
    """The digest behind a tag (or digest), None when there is no such manifest."""
    response = client.request("HEAD", client.manifest_url(ref), ok=(200, 404),
                              headers={"Accept": ", ".join(MANIFEST_TYPES)})
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def manifest_bytes(client: Client, ref: str) -> tuple[bytes, str]:
    """The manifest exactly as stored (re-serialising would change its digest) and its type."""
    response = client.request("GET", client.manifest_url(ref), headers={"Accept": ", ".join(MANIFEST_TYPES)})
    return response.content, response.headers.get("Content-Type", MANIFEST_TYPES[0])


def version_of(client: Client, digest: str) -> int | None:
    """The version number whose tag points at `digest` (newest first; None when untagged)."""
    for number in reversed(version_numbers(client)):
        if resolve(client, f"v{number}") == digest:
            return number
    return None


def describe(client: Client, ref: str) -> Version | None:
    """The version behind a tag, `v<N>`, N or digest, with its annotations; None when absent."""
    ref = f"v{ref}" if ref.isdigit() else ref
    digest = resolve(client, ref)
    if digest is None:
        return None
    data, _ = manifest_bytes(client, digest)
    match = _VERSION_TAG.match(ref)
    number = int(match.group(1)) if match else version_of(client, digest)
    return Version(number=number or 0, digest=digest, annotations=json.loads(data).get("annotations") or {})


def aliases(client: Client) -> dict[str, str | None]:
    """Each alias -> the digest it points at (None when unset)."""
    return {alias: resolve(client, alias) for alias in ALIASES}


def pull(client: Client, digest: str, cache: Path) -> Path:
    """The model directory of `digest`, downloaded once into cache/<digest> (content-addressed),
    its signature checked on every call when MLOPS_MODEL_SIGNING_PUBLIC_KEY is set."""
    from pipeline import signing

    dest = cache / digest.replace(":", "-")
    signature = dest.with_name(dest.name + ".sig")
    if not (dest / "MLmodel").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=cache, prefix=".pull-"))
        try:
            files = _oras(client, "pull", lambda: client.oras.pull(target=client.repo.ref(digest), outdir=str(partial)))
            model = next((Path(f) for f in files if (Path(f) / "MLmodel").is_file()), None)
            if model is None:
                raise client.error(f"pull {digest}", "the artifact holds no MLflow model directory")
            pulled_signature = partial / signing.SIGNATURE_NAME
            signing.verify(model, pulled_signature if pulled_signature.is_file() else None, client.repo.ref(digest))
            if pulled_signature.is_file():
                shutil.copyfile(pulled_signature, signature)
            if dest.exists():
                shutil.rmtree(dest)
            model.rename(dest)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    signing.verify(dest, signature if signature.is_file() else None, client.repo.ref(digest))
    return dest


# --- writing ------------------------------------------------------------------------------------

def _oras(client: Client, what: str, call: Any) -> Any:
    import requests

    try:
        return call()
    except (requests.RequestException, ValueError, OSError) as exc:
        raise client.error(what, exc) from None


def to_annotations(lineage: dict[str, Any]) -> dict[str, str]:
    """Manifest annotations: strings only; dicts and lists as compact JSON."""
    return {ANNOTATION + key: value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
            for key, value in lineage.items() if value is not None}


def push(client: Client, model_dir: Path, lineage: dict[str, Any], signature: Path | None = None) -> Version:
    """Push the model directory (and its signature file, when signed) as a new version; return
    its number and digest.

    The artifact is pushed under the next free `v<N>`; should another push have taken that
    number meanwhile (the settle pause, as for aliases), the same manifest is tagged N+1 instead.
    """
    if not (model_dir / "MLmodel").is_file():
        raise PipelineError(f"push: {model_dir} is not an MLflow model directory; run `mlops train` first")
    notes = to_annotations(lineage)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(lineage, sort_keys=True, default=str), encoding="utf-8")
        number = (version_numbers(client) or [0])[-1] + 1
        files = [f"{model_dir}:application/vnd.oci.image.layer.v1.tar+gzip"]
        if signature is not None:
            from pipeline.signing import SIGNATURE_NAME, SIGNATURE_TYPE

            named = Path(tmp) / SIGNATURE_NAME  # the layer's title is the file's name; pull looks for this one
            shutil.copyfile(signature, named)
            files.append(f"{named}:{SIGNATURE_TYPE}")
        response = _oras(client, f"push v{number}", lambda: client.oras.push(
            target=client.repo.ref(f"v{number}"), files=files,
            manifest_config=f"{config}:{CONFIG_TYPE}", manifest_annotations=notes, disable_path_validation=True, quiet=True))
    digest = response.headers.get("Docker-Content-Digest") or resolve(client, f"v{number}")
    for _ in range(100):
        time.sleep(SETTLE_SECONDS)
        if resolve(client, f"v{number}") == digest:
            return Version(number=number, digest=str(digest), annotations=notes)
        number = version_numbers(client)[-1] + 1  # taken by a racing push: ours is still there by digest
        _put(client, number_tag(number), str(digest))
    raise client.error("push", "could not claim a version number after 100 attempts")


def number_tag(number: int) -> str:
    return f"v{number}"


def _put(client: Client, tag: str, digest: str) -> None:
    data, media_type = manifest_bytes(client, digest)
    client.request("PUT", client.manifest_url(tag), ok=(200, 201), data=data, headers={"Content-Type": media_type})


def move_alias(client: Client, alias: str, digest: str, expected: str | None) -> None:
    """Point `alias` at `digest` if it still points at `expected` (None: unset); compare-and-swap.

    Fails naming the digest found when the alias moved, before or during this move.
    """
    if alias not in ALIASES:
        raise PipelineError(f"unknown alias {alias!r}; one of {', '.join(ALIASES)}")
    found = resolve(client, alias)
    if found == digest:
        return
    if found != expected:
        raise moved(client, alias, expected, found)
    _put(client, alias, digest)
    time.sleep(SETTLE_SECONDS)
    found = resolve(client, alias)
    if found != digest:
        raise moved(client, alias, expected, found)
    if alias == CHAMPION:
        record_champion(client, digest, expected)


_HISTORY_TAG = re.compile(r"^champion-h([0-9]+)$")


def champion_history(client: Client) -> list[tuple[int, str]]:
    """(entry number, history tag) of every recorded champion, oldest first."""
    return sorted((int(m.group(1)), tag) for tag in tags(client) if (m := _HISTORY_TAG.match(tag)))


def record_champion(client: Client, digest: str, previous: str | None) -> None:
    """Append `digest` to the champion history (tags `champion-h<N>`, never deleted); the
    champion it replaced goes first when the history does not hold it yet (older registries)."""
    history = champion_history(client)
    last = resolve(client, history[-1][1]) if history else None
    number = history[-1][0] if history else 0
    if previous and last != previous:
        number += 1
        _put(client, f"champion-h{number}", previous)
    _put(client, f"champion-h{number + 1}", digest)


def previous_champion(client: Client) -> str | None:
    """The champion before the current one: the history entry before the current champion's
    latest entry (None when there is no earlier one)."""
    current = resolve(client, CHAMPION)
    digests = [resolve(client, tag) for _, tag in champion_history(client)]
    if current not in digests:
        return digests[-1] if digests else None
    latest = len(digests) - 1 - digests[::-1].index(current)
    earlier = [d for d in digests[:latest] if d and d != current]
    return earlier[-1] if earlier else None


def moved(client: Client, alias: str, expected: str | None, found: str | None) -> PipelineError:
    return client.error(f"`{alias}` moved", f"expected {expected or 'no alias'}, found {found or 'no alias'}; "
                        "another promotion won: nothing of ours was moved, re-run `mlops evaluate`")
