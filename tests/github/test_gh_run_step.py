"""actions/run_step.py: how a composite action turns `mlops` output into GitHub annotations,
job-summary sections and step outputs. The last tests run the real `mlops` on a repo copy."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("run_step", REPO / "actions" / "run_step.py")
run_step = importlib.util.module_from_spec(SPEC)  # type: ignore[arg-type]
sys.modules[SPEC.name] = run_step
SPEC.loader.exec_module(run_step)  # type: ignore[union-attr]

CONFIG = REPO / "mlops.yaml"


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(CONFIG.read_text().splitlines(), start=1) if text in line)


def test_annotation_command_escapes_github_syntax() -> None:
    item = run_step.Annotation("error", "50%\nnext", "data/a,b.csv", 3)
    assert item.command("mlops validate") == "::error file=data/a%2Cb.csv,line=3,title=mlops validate::50%25%0Anext"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("column 'island': allowed: expected one of [Biscoe], observed 'Atlantis'", "    island:"),
        ("gate accuracy: 0.9405 is not ≥ 0.99", "{metric: accuracy, threshold"),
        ("train.params: unexpected keyword argument 'n_estimatorz'", "  params:"),
        ("mlops.yaml: evaluate.fairness.max: input should be a number", "    max: 0.50"),
    ],
)
def test_config_problems_point_at_their_line_in_mlops_yaml(message: str, expected: str) -> None:
    assert run_step.locate(message, CONFIG, REPO) == ("mlops.yaml", line_of(expected))


def test_row_problems_point_at_the_data_file_line() -> None:
    data = REPO / "data" / "penguins.csv"
    assert run_step.locate("column 'island': unseen (first: line 6 = 'Atlantis')", CONFIG, REPO, data) == ("data/penguins.csv", 6)
    assert run_step.locate("data/penguins.csv: line 3: expected 2 fields", CONFIG, REPO) == ("data/penguins.csv", 3)


def test_progress_and_tally_lines_are_not_annotated() -> None:
    lines = [
        "[2/5] train     ok in 9.48s",
        "validate: 2 problem(s) in data/x.csv",
        "evaluate: champion: no champion found: comparison passes",
        "evaluate: failed (1 failing check(s))",
        "2026/11/22 09:47:52 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
        "evaluate: FAIL gate accuracy: 0.94 is not ≥ 0.99",
        "warning: drift: column 'delta_13c': psi 0.3",
    ]
    found = run_step.annotations(lines, True, CONFIG, REPO)
    assert [(a.level, a.message) for a in found] == [
        ("error", "gate accuracy: 0.94 is not ≥ 0.99"),
        ("warning", "drift: column 'delta_13c': psi 0.3"),
    ]
    assert [a.level for a in run_step.annotations(lines, False, CONFIG, REPO)] == ["warning"]


def test_step_outputs_read_the_files_the_step_wrote(tmp_path: Path) -> None:
    (tmp_path / "validate.json").write_text('{"passed": false}')
    values = run_step.step_outputs("validate", tmp_path, 1)
    assert values == {"exit-code": "1", "passed": "false", "result": str(tmp_path / "validate.json")}
    assert run_step.step_outputs("report", tmp_path, 2) == {"exit-code": "2", "verdict": "", "report": "", "summary": ""}


def test_summary_lists_problems_or_carries_the_report(tmp_path: Path) -> None:
    problems = [run_step.Annotation("error", "gate accuracy", "mlops.yaml", 48)]
    text = run_step.summary_markdown("evaluate", 1, problems, tmp_path)
    assert text.startswith("### ❌ `mlops evaluate` failed (exit 1)") and "(`mlops.yaml:48`)" in text
    (tmp_path / "report.md").write_text("<!-- mlops-report -->\n## ✅ fine\n")
    assert run_step.summary_markdown("report", 0, [], tmp_path).startswith("<!-- mlops-report -->")


def test_install_runs_once_per_job(tmp_path: Path, monkeypatch) -> None:
    """A second action in the same job finds the stamp and does not reinstall."""
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    (tmp_path / run_step.STAMP).write_text(f"{REPO}\n")
    assert run_step.install(str(REPO / "actions" / "validate" / ".." / ".."), "") == 0


def test_main_splits_its_own_options_from_mlops_arguments(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(run_step, "run", lambda step, config, extra: calls.append((step, config, extra)) or 0)
    assert run_step.main(["validate", "--config", "x.yaml", "--", "--data", "d.csv"]) == 0
    assert calls == [("validate", "x.yaml", ["--data", "d.csv"])]


def _reports(folder: Path, problems: list[dict] | None = None, drifted: list[str] | None = None) -> Path:
    import json

    if problems is not None:
        (folder / "validate-data.json").write_text(json.dumps({"passed": not problems, "problems": problems}))
    if drifted is not None:
        (folder / "drift.json").write_text(json.dumps({"drifted": drifted, "features": {}}))
    return folder


DRIFT_PROBLEM = {"check": "drift", "column": "body_mass_g", "expected": "psi <= 0.2", "observed": "psi 0.9"}
RANGE_PROBLEM = {"check": "range", "column": "body_mass_g", "expected": "<= 7000", "observed": "7200 in 3 rows"}


@pytest.mark.parametrize(
    ("problems", "drifted", "codes", "expected"),
    [
        ([], ["body_mass_g"], ("0", "1"), (True, 0)),
        ([], [], ("0", "0"), (False, 0)),
        ([DRIFT_PROBLEM], ["body_mass_g"], ("1", "1"), (True, 0)),    # on_drift: fail is still drift
        ([RANGE_PROBLEM], ["body_mass_g"], ("1", "1"), (False, 1)),   # bad data is never drift
        (None, [], ("1", "1"), (False, 1)),                           # empty file: validate wrote nothing
        ([], [], ("0", "1"), (False, 1)),                             # drift exit 1 without drifted features
        ([], None, ("0", "1"), (False, 1)),                           # no drift.json
        ([], ["body_mass_g"], ("0", "2"), (False, 1)),                # drift crashed
        ([], ["body_mass_g"], ("0", "0"), (False, 1)),                # report and exit code disagree
        ([], ["x"], ("2", "1"), (False, 1)),                          # validate crashed
    ],
    ids=["drift", "no-drift", "drift-fails-validation", "bad-range", "empty-file", "exit1-no-features",
         "no-report", "drift-crash", "disagree", "validate-crash"],
)
def test_drift_verdict_comes_from_the_reports_not_the_exit_code(tmp_path: Path, monkeypatch, capsys, problems, drifted, codes,
                                                                expected) -> None:
    """monitor.yml: only valid data whose drift.json names drifted features opens a retraining PR."""
    _reports(tmp_path, problems, drifted)
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("MLOPS_OUTPUTS", str(tmp_path))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    code = run_step.main(["drift-verdict", "--validate-code", codes[0], "--drift-code", codes[1]])
    assert (f"drifted={'true' if expected[0] else 'false'}\n" in outputs.read_text(), code) == (True, expected[1])
    out = capsys.readouterr().out
    assert ("::error title=incoming data::" in out) == bool(expected[1])
    if problems == [RANGE_PROBLEM]:
        assert "range column body_mass_g: expected <= 7000, observed 7200 in 3 rows" in out


def test_deploy_credentials_are_written_owner_only_and_exported(tmp_path: Path, monkeypatch, capsys) -> None:
    """actions/deploy's credentials step (was duplicated shell in main.yml's two deploy jobs)."""
    home, temp, env_file = tmp_path / "home", tmp_path / "temp", tmp_path / "github_env"
    monkeypatch.setattr(Path, "home", lambda: home)
    monkeypatch.setenv("RUNNER_TEMP", str(temp))
    monkeypatch.setenv("GITHUB_ENV", str(env_file))
    monkeypatch.setenv("KUBECONFIG_DATA", "apiVersion: v1\nkind: Config")
    monkeypatch.setenv("SSH_KEY", "-----BEGIN KEY-----\nabc\n-----END KEY-----")
    monkeypatch.setenv("KNOWN_HOSTS", "manager ssh-ed25519 AAAA")
    for _ in range(2):  # idempotent: a second call (same job) adds no second IdentityFile line
        assert run_step.main(["credentials"]) == 0
    assert (temp / "kubeconfig").read_text() == "apiVersion: v1\nkind: Config\n"
    assert f"KUBECONFIG={temp / 'kubeconfig'}\n" in env_file.read_text()
    ssh = home / ".ssh"
    assert (ssh / "id_deploy").read_text() == "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"
    assert "manager ssh-ed25519 AAAA\n" in (ssh / "known_hosts").read_text()
    assert (ssh / "config").read_text().count("IdentityFile ~/.ssh/id_deploy") == 1
    for path in (temp / "kubeconfig", ssh / "id_deploy", ssh / "known_hosts", ssh / "config"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert ssh.stat().st_mode & 0o777 == 0o700
    assert "abc" not in capsys.readouterr().out


def test_no_deploy_credentials_write_nothing(tmp_path: Path) -> None:
    assert run_step.write_credentials("", " ", "hosts", tmp_path / "temp", tmp_path / "home") == {}
    assert not (tmp_path / "temp").exists() and not (tmp_path / "home").exists()


@pytest.fixture()
def repo_with_bad_row(repo_copy: Path) -> Path:
    rows = list(csv.reader((repo_copy / "data" / "penguins.csv").open()))
    rows[5][rows[0].index("island")] = "Atlantis"  # file line 6
    with (repo_copy / "data" / "penguins.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return repo_copy


def test_real_validate_failure_becomes_annotations_summary_and_outputs(repo_with_bad_row: Path, tmp_path: Path, monkeypatch,
                                                                       capsys) -> None:
    """`mlops validate` on a row with an unseen category: exit 1, an ::error at the data line."""
    monkeypatch.chdir(repo_with_bad_row)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(repo_with_bad_row))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    monkeypatch.delenv("MLOPS_OUTPUTS", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("mlops"), "the package's console script must be installed"
    assert run_step.main(["validate", "--config", "mlops.yaml"]) == 1
    out = capsys.readouterr().out
    assert "::error file=data/penguins.csv,line=6,title=mlops validate::column 'island'" in out
    assert "### ❌ `mlops validate` failed (exit 1)" in (tmp_path / "summary.md").read_text()
    assert "passed=false\n" in (tmp_path / "output").read_text() and "exit-code=1\n" in (tmp_path / "output").read_text()
