"""`mlops build --context DIR`: stage the serving image's build context and its build args and
labels for another builder (docker/build-push-action in the merge workflow), without docker.

Run as the build action runs it (`mlops build` with GITHUB_ACTIONS=true), so the step outputs
are checked in the `$GITHUB_OUTPUT` format GitHub reads (multi-line values in the
`name<<DELIMITER` form).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHA = "0123456789abcdef0123456789abcdef01234567"


def parse_github_output(text: str) -> dict[str, str]:
    """`name=value` and `name<<DELIMITER ... DELIMITER` entries, as the runner reads them."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for item in lines:
                if item == delimiter:
                    break
                body.append(item)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def stage(tmp_path: Path, model: Path, *extra: str, config_path: Path = REPO / "mlops.yaml",
          env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    """`mlops build --context` under GitHub Actions, with a `docker` on PATH that fails loudly if called."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    docker = fake_bin / "docker"
    docker.write_text(f"#!/bin/sh\ntouch {tmp_path / 'docker-was-called'}\nexit 99\n")
    docker.chmod(0o755)
    output = tmp_path / "github-output"
    output.write_text("")
    context = tmp_path / "context"
    run_env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
               "MLOPS_OUTPUTS": str(tmp_path / "outputs"), "MLOPS_MODEL_VERSION": "7", "GITHUB_SHA": SHA,
               "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "Acme/Model",
               "MLOPS_BASE_IMAGE": "local/python-base:3.11", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--config", str(config_path), "build",
                             "--model", str(model), "--registry", "ghcr.io/Acme", "--context", str(context), *extra],
                            cwd=config_path.parent, env=run_env, capture_output=True, text=True, timeout=300)
    return result, parse_github_output(output.read_text()), context


def test_context_stages_what_the_dockerfile_copies_and_outputs_args_and_labels(tmp_path: Path, model_dir: Path) -> None:
    result, outputs, context = stage(tmp_path, model_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "docker-was-called").exists(), "stage-only mode must not need docker"

    # the files the Dockerfile copies, and the Dockerfile itself
    assert (context / "Dockerfile").read_text() == (REPO / "infra" / "docker" / "Dockerfile").read_text()
    assert (context / "artifacts" / "model" / "MLmodel").is_file()
    assert json.loads((context / "artifacts" / "contract.json").read_text())
    # the code: the runtime and its import-free parent package, and the model plug-in; no other pipeline code
    assert sorted(path.name for path in (context / "app").iterdir()) == ["model", "pipeline"]
    assert sorted(path.name for path in (context / "app" / "pipeline").iterdir()) == ["__init__.py", "serving"]
    assert (context / "app" / "pipeline" / "serving" / "__main__.py").is_file()
    assert (context / "app" / "model" / "__init__.py").is_file()
    assert not list(context.rglob("__pycache__"))
    requirements = (context / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("scikit-learn==") for line in requirements)
    assert any(line.startswith("fastapi==") for line in requirements)
    assert (context / ".dockerignore").read_text().strip() == ".mlops-context"  # the marker stays out of the image

    # step outputs: single values, and the multi-line ones docker/build-push-action takes as lists
    assert outputs["exit-code"] == "0"
    assert outputs["context"] == str(context.resolve())
    assert outputs["repository"] == "ghcr.io/acme/penguins-sex"  # registries want lower case
    assert outputs["model-version"] == "7" and outputs["git-sha"] == SHA
    assert outputs["base-image"] == "local/python-base:3.11"
    build_args = dict(line.split("=", 1) for line in outputs["build-args"].splitlines())
    assert build_args["BASE_IMAGE"] == "local/python-base:3.11" and build_args["GIT_SHA"] == SHA
    assert build_args["MODEL_VERSION"] == "7" and build_args["MODEL_URI"] == str(model_dir.resolve())
    assert build_args["SOURCE"] == "https://github.com/Acme/Model"
    assert set(build_args) == {"BASE_IMAGE", "GIT_SHA", "MODEL_VERSION", "MODEL_URI", "DATA_HASH", "CREATED", "SOURCE"}
    labels = dict(line.split("=", 1) for line in outputs["labels"].splitlines())
    assert labels["org.opencontainers.image.revision"] == SHA
    assert labels["org.opencontainers.image.version"] == "7" and labels["io.mlops.model.version"] == "7"
    assert labels["org.opencontainers.image.base.name"] == "local/python-base:3.11"
    assert labels["org.opencontainers.image.created"] == build_args["CREATED"]
    assert labels["org.opencontainers.image.source"] == "https://github.com/Acme/Model"
    assert outputs["secret-files"] in ("", *(f"pipca={c}" for c in ("/etc/ssl/certs/ca-certificates.crt",
                                                                    os.environ.get("PIP_CERT", ""),
                                                                   os.environ.get("SSL_CERT_FILE", ""))))

    # the same in outputs/build.json, and the log shows what a builder gets
    result_json = json.loads(Path(outputs["result"]).read_text())
    assert result_json["mode"] == "context" and result_json["build_args"] == outputs["build-args"].splitlines()
    assert f"label org.opencontainers.image.revision={SHA}" in result.stdout
    assert "not built" in result.stdout


def test_context_can_be_staged_again_but_never_over_other_files(tmp_path: Path, model_dir: Path) -> None:
    first, _, context = stage(tmp_path, model_dir)
    assert first.returncode == 0, first.stderr
    again, outputs, _ = stage(tmp_path, model_dir)
    assert again.returncode == 0, again.stderr
    assert outputs["context"] == str(context.resolve())

    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    (tmp_path / "context").rename(tmp_path / "staged-before")
    shutil.copytree(other, tmp_path / "context")
    refused, outputs, _ = stage(tmp_path, model_dir)
    assert refused.returncode == 1
    assert "folder is not empty" in refused.stderr
    assert (tmp_path / "context" / "keep.txt").read_text() == "mine"
    assert outputs["exit-code"] == "1"


def test_a_forks_own_infra_is_what_gets_built(tmp_path: Path, model_dir: Path) -> None:
    """infra/ beside mlops.yaml wins over the package's copy; without one, the package's is used."""
    from pipeline.delivery.build import REPO as PACKAGE_ROOT
    from pipeline.delivery.build import infra_dir

    fork = tmp_path / "fork"
    fork.mkdir()
    shutil.copy(REPO / "mlops.yaml", fork / "mlops.yaml")
    shutil.copytree(REPO / "data", fork / "data")
    assert infra_dir(fork) == PACKAGE_ROOT / "infra"
    without, _, context = stage(tmp_path, model_dir, config_path=fork / "mlops.yaml")
    assert without.returncode == 0, without.stderr
    assert (context / "Dockerfile").read_text() == (PACKAGE_ROOT / "infra" / "docker" / "Dockerfile").read_text()

    (fork / "infra" / "docker").mkdir(parents=True)
    edited = (REPO / "infra" / "docker" / "Dockerfile").read_text() + "# the fork's own line\n"
    (fork / "infra" / "docker" / "Dockerfile").write_text(edited)
    assert infra_dir(fork) == fork / "infra"
    with_infra, _, context = stage(tmp_path, model_dir, config_path=fork / "mlops.yaml")
    assert with_infra.returncode == 0, with_infra.stderr
    assert (context / "Dockerfile").read_text() == edited


def test_deploy_renders_the_forks_own_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mlops deploy --target kubernetes` renders infra/ beside mlops.yaml, else the package's."""
    from pipeline.delivery import deploy

    rendered: list[str] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        rendered.append(cmd[-1])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(deploy, "_kubectl", lambda: "kubectl")
    monkeypatch.setattr(deploy.subprocess, "run", fake_run)
    (tmp_path / "infra" / "k8s" / "overlays" / "staging").mkdir(parents=True)
    deploy.render_overlay("staging", None, tmp_path)
    deploy.render_overlay("staging", None, tmp_path / "no-infra-here")
    assert rendered == [str(tmp_path / "infra" / "k8s" / "overlays" / "staging"),
                        str(REPO / "infra" / "k8s" / "overlays" / "staging")]


def test_deploy_reports_dockers_error_without_its_detach_notice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, point 9: Docker 26+ prints a two-line `--detach=false` notice on every stack
    deploy; it is advice, and must neither become part of an error annotation nor push the real
    cause out of the message. A real `docker` stand-in on PATH prints both and fails."""
    from pipeline.delivery import deploy
    from pipeline.errors import PipelineError

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        "echo 'Since --detach=false was not specified, tasks will be created in the background.' >&2\n"
        "echo 'In a future release, --detach=false will become the default.' >&2\n"
        "echo 'network penguins-sex-production_default not found' >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(PipelineError) as caught:
        deploy._docker("stack", "deploy", "-c", "stack.yml", "x")
    assert "detach" not in str(caught.value)
    assert str(caught.value).endswith("failed: network penguins-sex-production_default not found")
