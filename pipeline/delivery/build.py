"""build the serving image and push it to a registry (tags: git sha and model version).

The build context is staged (`stage`, the one place that decides what goes into the image) with
only what the image needs: the serving runtime (`pipeline/serving`, with the import-free
`pipeline/__init__.py`), the `model` package, the MLflow model directory with the model converted
to ONNX beside it (pipeline/delivery/onnx.py, kept only when it agrees with scikit-learn), the
contract derived from mlops.yaml, pinned requirements (onnxruntime and NumPy when the model
converted; else scikit-learn pinned to the version the model was trained with) and
infra/docker/Dockerfile, plus the build args and OCI lineage labels. `--context DIR`
stops there: it stages into DIR and records the build args, labels and secret files in
outputs/build.json (and, through pipeline.github, step outputs) for a builder such as
docker/build-push-action. Without it the image is built and pushed here; when the base image
cannot be pulled (no Docker Hub), the air-gapped base is built from Debian packages with
infra/base-image.sh. infra/ is the one beside mlops.yaml, else the one shipped with the package.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.delivery.onnx import Conversion

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "python:3.11-slim"
AIR_GAPPED_BASE = "local/python-base:3.11"
# What the build action exposes, from outputs/build.json (`mlops build --context DIR` fills
# context..secret-files for docker/build-push-action); lists become one item per line.
RESULT_FILE = "build.json"
ACTION_OUTPUTS = {"image": "image", "digest": "digest", "tags": "tags", "model-version": "model_version", "result": "@build.json",
                  "context": "context", "repository": "repository", "build-args": "build_args", "labels": "labels",
                  "secret-files": "secret_files", "base-image": "base_image", "git-sha": "git_sha"}
SERVE_EXTRA = "serve"  # the pyproject.toml extra the server needs on top of the model's requirements
ONNX_RUNTIME = "onnxruntime"  # in the serve extra; in the image only when the model converted
CONTEXT_MARK = ".mlops-context"  # marks a folder `--context` staged, so a re-run may replace it
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")
CA_BUNDLES = [os.environ.get("PIP_CERT", ""), os.environ.get("SSL_CERT_FILE", ""), "/etc/ssl/certs/ca-certificates.crt"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="MLflow model directory, URI or registry:REF (default: the `challenger` alias)")
    parser.add_argument("--registry", default=os.environ.get("MLOPS_REGISTRY", "127.0.0.1:5000"),
                        help="registry host[:port][/namespace]")
    parser.add_argument("--image", default=None, help="repository name (default: the project name)")
    parser.add_argument("--base-image", default=os.environ.get("MLOPS_BASE_IMAGE", DEFAULT_BASE))
    parser.add_argument("--no-push", action="store_true", help="build and tag only")
    parser.add_argument("--tag", action="append", default=[], help="extra tag (repeatable)")
    parser.add_argument("--no-onnx", action="store_true", help="serve the model with scikit-learn even if it converts "
                        "to ONNX (the image then carries scikit-learn and the estimator's packages)")
    parser.add_argument("--context", metavar="DIR", help="only stage the build context into DIR and write the build args and "
                        "labels to outputs/build.json; no docker needed, nothing is built or pushed")


def infra_dir(root: Path | None) -> Path:
    """infra/ beside mlops.yaml (a forker's edited copy) when it exists, else the package's own."""
    if root is not None and (Path(root) / "infra").is_dir():
        return Path(root) / "infra"
    return REPO / "infra"


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, capture: bool = False) -> str:
    quiet = not capture and what.startswith("quiet")
    result = subprocess.run(cmd, env={**os.environ, **(env or {})}, text=True,
                            capture_output=capture, stdout=subprocess.DEVNULL if quiet else None)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-3:] if capture else []
        raise PipelineError(f"{what.removeprefix('quiet ')} failed (exit {result.returncode}): "
                            f"{' '.join(cmd[:4])} ... {' | '.join(detail)}")
    return (result.stdout or "").strip()


def docker_for_build() -> tuple[str, dict[str, str]]:
    """A docker client that builds with BuildKit (needed for the pip CA secret)."""
    candidates = [os.environ.get("MLOPS_DOCKER", ""), "docker", "/usr/bin/docker"]
    for name in filter(None, candidates):
        path = shutil.which(name)
        if not path:
            continue
        if subprocess.run([path, "buildx", "version"], capture_output=True).returncode == 0:
            return path, {}
        version = subprocess.run([path, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True).stdout
        if version and int(version.split(".")[0]) < 23:  # BuildKit built into the classic client
            return path, {"DOCKER_BUILDKIT": "1"}
    raise PipelineError("no docker client with BuildKit found (install docker buildx, or set MLOPS_DOCKER)")


def ensure_base(docker: str, base: str, infra: Path = REPO / "infra") -> str:
    """Use `base` if present or pullable; else build the air-gapped base from Debian packages."""
    if subprocess.run([docker, "image", "inspect", base], capture_output=True).returncode == 0:
        return base
    if subprocess.run([docker, "pull", base], capture_output=True, timeout=300).returncode == 0:
        return base
    if subprocess.run([docker, "image", "inspect", AIR_GAPPED_BASE], capture_output=True).returncode == 0:
        print(f"build: cannot pull {base}; using {AIR_GAPPED_BASE}")
        return AIR_GAPPED_BASE
    print(f"build: cannot pull {base}; building {AIR_GAPPED_BASE} with debootstrap (about 1.5 min)")
    _run(["bash", str(infra / "base-image.sh"), AIR_GAPPED_BASE], "air-gapped base image build")
    return AIR_GAPPED_BASE


def serve_packages() -> list[str]:
    """The names in pyproject.toml's `serve` extra (from the installed metadata when the package
    was installed without its source tree)."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    pyproject = REPO / "pyproject.toml"
    if pyproject.is_file():
        declared = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"][SERVE_EXTRA]
    else:
        declared = [r for r in metadata.requires("mlops-template") or []
                    if (m := Requirement(r).marker) is not None and m.evaluate({"extra": SERVE_EXTRA})]
    return [Requirement(r).name for r in declared]


def requirements(model_dir: Path, onnx: bool = False) -> str:
    """The image's requirements.txt: the model's own requirements.txt (written at training from
    the estimator's declaration in model/estimator.py, pinned to the training versions), plus the
    `serve` extra; what either leaves unpinned gets this environment's version. MLflow stays out
    of the image. With `onnx` (the model converted and verified): the `serve` extra and NumPy
    only, since onnxruntime runs the graph (no scikit-learn, SciPy, pandas or estimator package);
    without it, no onnxruntime."""
    from packaging.requirements import InvalidRequirement, Requirement

    from pipeline.tracking import package_versions

    source = model_dir / "requirements.txt"
    if not source.is_file():
        raise PipelineError(f"{source}: missing; the model directory must be an MLflow model saved by `mlops train`")
    declared: dict[str, str] = {}
    for line in [] if onnx else source.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise PipelineError(f"{source}: cannot read requirement {line!r}: {exc}") from None
        if requirement.name != "mlflow":
            declared[requirement.name] = line if requirement.specifier else ""
    for name in [*serve_packages(), *(["numpy"] if onnx else [])]:
        if onnx or name != ONNX_RUNTIME:
            declared.setdefault(name, "")
    pins = package_versions([name for name, line in declared.items() if not line])
    lines = [line or (f"{name}=={pins[name]}" if name in pins else name) for name, line in declared.items()]
    return "".join(f"{line}\n" for line in lines)


def lock_constraints(lock: Path, pins: str) -> str:
    """The repository's lock file as pip constraints for the image, minus the packages `pins` names.

    The transitive dependencies come out at the locked versions; the model's own pins
    (scikit-learn as trained) win over the lock. Empty when the package runs without its lock.
    """
    pinned = {line.split("==")[0].lower() for line in pins.splitlines()}
    lines = lock.read_text().splitlines() if lock.is_file() else []
    return "".join(f"{line}\n" for line in lines if "==" in line and line.split("==")[0].strip().lower() not in pinned)


def stage_app(app: Path) -> Path:
    """The code the image runs, into `app` (the image's PYTHONPATH): the runtime `pipeline/serving`
    with its import-free parent `pipeline/__init__.py`, and the `model` plug-in, whose custom
    transformer classes skops needs to load the model. No other pipeline code."""
    (app / "pipeline").mkdir(parents=True)
    shutil.copy(REPO / "pipeline" / "__init__.py", app / "pipeline" / "__init__.py")
    shutil.copytree(REPO / "pipeline" / "serving", app / "pipeline" / "serving", ignore=_IGNORE)
    shutil.copytree(REPO / "model", app / "model", ignore=_IGNORE)
    return app


def stage_context(config, model_dir: Path, dest: Path, infra: Path = REPO / "infra", convert: bool = True) -> Conversion:
    """Everything the Dockerfile copies, and nothing else; the model converted to ONNX beside its
    staged copy when it converts and agrees with scikit-learn (the result says which runtime serves)."""
    from pipeline.delivery import onnx
    from pipeline.delivery.contract import from_config
    from pipeline.serving.contract import write

    stage_app(dest / "app")
    staged_model = dest / "artifacts" / "model"
    shutil.copytree(model_dir, staged_model, ignore=_IGNORE)
    contract = from_config(config)
    write(contract, dest / "artifacts" / "contract.json")
    conversion = onnx.convert(staged_model, contract) if convert else onnx.Conversion(False, "--no-onnx")
    print(f"build: {conversion.runtime} serves the model ({conversion.detail})", flush=True)
    pins = requirements(model_dir, onnx=conversion.ok)
    (dest / "requirements.txt").write_text(pins)
    (dest / "constraints.txt").write_text(lock_constraints(REPO / "requirements.txt", pins))
    shutil.copy(infra / "docker" / "Dockerfile", dest / "Dockerfile")
    return conversion


@dataclass
class Staged:
    """A staged build context and what a builder needs besides it."""

    context: Path
    repository: str
    tags: list[str]
    build_args: dict[str, str]
    labels: dict[str, str]
    runtime: str  # what serves the model in the image: onnxruntime or scikit-learn
    secret_files: list[str] = field(default_factory=list)  # `id=path`, as docker/build-push-action takes them


def stage(config, resolved, args: argparse.Namespace, base: str, dest: Path) -> Staged:
    """Stage the context into `dest` and compute tags, build args, OCI lineage labels and secrets."""
    sha = git_sha(config.root)
    if sha == "unknown":
        sha = resolved.tags.get("git_sha", sha)  # not a git checkout: the commit the model was trained at
    repo = f"{args.registry.rstrip('/')}/{args.image or config.project}".lower()
    tags = [f"{repo}:sha-{sha[:7]}", f"{repo}:model-{resolved.version}", *[f"{repo}:{t}" for t in args.tag]]
    source = os.environ.get("GITHUB_SERVER_URL", "")
    if "GITHUB_REPOSITORY" in os.environ:
        source += "/" + os.environ["GITHUB_REPOSITORY"]
    build_args = {"BASE_IMAGE": base, "GIT_SHA": sha, "MODEL_VERSION": resolved.version, "MODEL_URI": resolved.uri,
                  "DATA_HASH": resolved.tags.get("data_hash", "unknown"),
                  "CREATED": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "SOURCE": source}
    # the same lineage the Dockerfile's LABEL sets from the build args, for builders that merge labels
    labels = {"org.opencontainers.image.revision": sha, "org.opencontainers.image.version": resolved.version,
              "org.opencontainers.image.created": build_args["CREATED"], "org.opencontainers.image.base.name": base,
              "io.mlops.model.version": resolved.version, "io.mlops.model.uri": resolved.uri,
              "io.mlops.data.hash": build_args["DATA_HASH"]}
    if build_args["SOURCE"]:
        labels["org.opencontainers.image.source"] = build_args["SOURCE"]
    if resolved.digest:  # the registry model inside, by digest: the image's lineage back to it
        labels["io.mlops.model.digest"] = resolved.digest
    ca = next((c for c in CA_BUNDLES if c and Path(c).is_file()), None)
    conversion = stage_context(config, resolved.path, dest, infra_dir(config.root), convert=not args.no_onnx)
    return Staged(dest, repo, tags, build_args, labels, conversion.runtime, [f"pipca={ca}"] if ca else [])


def refuse_unverified(resolved) -> None:
    """With a public key or identity configured, only a verified registry model goes into an image."""
    from pipeline import signing
    from pipeline.delivery.serve import REGISTRY_PREFIX

    if signing.required() and not resolved.digest:
        raise PipelineError(f"build: {resolved.uri} is not from the model registry, so it cannot be verified, and "
                            f"a verification key is configured: build {REGISTRY_PREFIX}<version or digest> instead")
    print(f"build: model {resolved.uri}" + (" (registry, verified)" if signing.required() else
                                            " (not verified: no public key or identity configured)"))


def _fresh_folder(path: Path) -> Path:
    """An empty folder at `path`; refuses to empty one that is not an earlier staged context."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / CONTEXT_MARK).is_file():
            raise PipelineError(f"--context {path}: folder is not empty (use a new folder)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_sha(root: Path) -> str:
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return os.environ.get("GITHUB_SHA") or (result.stdout.strip() if result.returncode == 0 else "unknown")


def _write_result(config, result: dict) -> None:
    from pipeline.files import write_json
    from pipeline.paths import Paths

    write_json(Paths(config.root).outputs / RESULT_FILE, result)


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.delivery.serve import resolve_model

    config = load_config(args.config)
    resolved = resolve_model(config, args.model)
    refuse_unverified(resolved)
    if args.context:
        staged = stage(config, resolved, args, args.base_image, _fresh_folder(Path(args.context)))
        (staged.context / CONTEXT_MARK).write_text("staged by `mlops build --context`\n")
        (staged.context / ".dockerignore").write_text(CONTEXT_MARK + "\n")
        _write_result(config, {"mode": "context", "context": str(staged.context), "repository": staged.repository,
                               "tags": staged.tags, "build_args": [f"{k}={v}" for k, v in staged.build_args.items()],
                               "labels": [f"{k}={v}" for k, v in staged.labels.items()], "secret_files": staged.secret_files,
                               "base_image": args.base_image, "model_version": resolved.version, "model_uri": resolved.uri,
                               "git_sha": staged.build_args["GIT_SHA"], "runtime": staged.runtime})
        for key, value in staged.build_args.items():
            print(f"build-arg {key}={value}")
        for key, value in staged.labels.items():
            print(f"label {key}={value}")
        print(f"build: staged the context of {staged.repository} in {staged.context} "
              f"(model {resolved.version}, base {args.base_image}); not built")
        return 0
    docker, env = docker_for_build()
    base = ensure_base(docker, args.base_image, infra_dir(config.root))
    with tempfile.TemporaryDirectory(prefix="mlops-build-") as tmp:
        staged = stage(config, resolved, args, base, Path(tmp))
        repo, tags = staged.repository, staged.tags
        cmd = [docker, "build", "--pull=false", "-q"]
        for secret in staged.secret_files:
            secret_id, _, src = secret.partition("=")
            cmd += ["--secret", f"id={secret_id},src={src}"]
        for key, value in staged.build_args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        for key, value in staged.labels.items():
            cmd += ["--label", f"{key}={value}"]
        for tag in tags:
            cmd += ["-t", tag]
        image_id = _run([*cmd, str(staged.context)], "docker build", env=env, capture=True)
    digest = ""
    if not args.no_push:
        for tag in tags:
            _run([docker, "push", tag], "quiet docker push", capture=True)
        repo_digests = _run([docker, "image", "inspect", "--format", "{{json .RepoDigests}}", tags[0]], "inspect", capture=True)
        digest = next((d for d in json.loads(repo_digests) if d.startswith(repo + "@")), "")
    sha = staged.build_args["GIT_SHA"]
    _write_result(config, {"image": digest or tags[0], "tags": tags, "digest": digest, "image_id": image_id, "base_image": base,
                           "model_version": resolved.version, "model_uri": resolved.uri, "git_sha": sha,
                           "repository": repo, "labels": [f"{k}={v}" for k, v in staged.labels.items()],
                           "runtime": staged.runtime})
    print(f"build: {digest or tags[0]} (model {resolved.version}, base {base})")
    return 0
