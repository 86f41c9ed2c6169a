"""pipeline/github.py: what a command tells GitHub Actions, from the typed step results (never
from its text output). The last tests run the real `mlops` with GITHUB_ACTIONS=true."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import github
from pipeline.steps import get
from pipeline.steps.base import Annotation
from pipeline.steps.evaluate import EvaluateResult

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "mlops.yaml"


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(CONFIG.read_text().splitlines(), start=1) if text in line)


def test_annotation_command_escapes_github_syntax() -> None:
    item = Annotation("error", "50%\nnext", "data/a,b.csv", 3)
    assert github.command_line(item, "mlops validate") == "::error file=data/a%2Cb.csv,line=3,title=mlops validate::50%25%0Anext"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("validate.columns.island", "    island:"),
        ("evaluate.gates.0", "{metric: accuracy, threshold"),
        ("train.params", "  params:"),
        ("evaluate.fairness.max", "    max: 0.50"),
        ("evaluate.gates.99", "  gates:"),  # out of range: the deepest existing parent
    ],
)
def test_config_keys_point_at_their_line_in_mlops_yaml(key: str, expected: str) -> None:
    located = github.locate(Annotation("error", "x", config_key=key), CONFIG, REPO)
    assert (located.file, located.line) == ("mlops.yaml", line_of(expected))


def test_failed_model_tests_point_at_the_entry_that_declares_them() -> None:
    gate = {"metric": "accuracy", "threshold": 0.99, "direction": "higher", "value": 0.94, "passed": False}
    result = EvaluateResult(passed=False, failures=["gate accuracy: 0.9400 is not ≥ 0.99"], run_id="r", metrics={},
                            champion={"passed": True}, gates=[gate])
    [item] = result.annotations()
    assert (item.level, item.message, item.config_key) == ("error", "gate accuracy: 0.9400 is not ≥ 0.99", "evaluate.gates.0")


def test_step_outputs_read_the_result_the_step_wrote(tmp_path: Path) -> None:
    (tmp_path / "validate.json").write_text('{"passed": false}')
    step = get("validate")
    expected = {"passed": "false", "result": str(tmp_path / "validate.json")}
    assert github.step_outputs(tmp_path / step.result_file, step.action_outputs) == expected
    report = get("report")
    empty = {"verdict": "", "report": "", "summary": ""}
    assert github.step_outputs(tmp_path / report.result_file, report.action_outputs) == empty


def test_an_unset_result_field_is_an_empty_output_not_none(tmp_path: Path) -> None:
    """promote without a model registry: `model-digest` must be empty (a workflow tests for ''),
    not the text "None" (which became `--model registry:None`)."""
    (tmp_path / "promote.json").write_text('{"moved": true, "version": "1", "model_digest": null, "registry_version": null}')
    outputs = github.step_outputs(tmp_path / "promote.json", get("promote").action_outputs)
    assert (outputs["model-digest"], outputs["registry-version"], outputs["moved"]) == ("", "", "true")


def test_summary_lists_problems_or_carries_the_report(tmp_path: Path) -> None:
    problems = [Annotation("error", "gate accuracy", "mlops.yaml", 48)]
    text = github.summary_markdown("evaluate", 1, problems, tmp_path)
    assert text.startswith("### ❌ `mlops evaluate` failed (exit 1)") and "(`mlops.yaml:48`)" in text
    (tmp_path / "report.md").write_text("<!-- mlops-report -->\n## ✅ fine\n")
    assert github.summary_markdown("report", 0, [], tmp_path).startswith("<!-- mlops-report -->")


def _github_env(tmp_path: Path, workspace: Path) -> dict[str, str]:
    return {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output")}


def test_real_validate_failure_becomes_annotations_summary_and_outputs(repo_copy: Path, tmp_path: Path) -> None:
    """`mlops validate` on a row with an unseen category: exit 1, an ::error at the data line."""
    rows = list(csv.reader((repo_copy / "data" / "penguins.csv").open()))
    rows[5][rows[0].index("island")] = "Atlantis"  # file line 6
    with (repo_copy / "data" / "penguins.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate"], cwd=repo_copy, capture_output=True, text=True,
                          env=_github_env(tmp_path, repo_copy), timeout=300)
    assert done.returncode == 1, done.stderr
    assert "::error file=data/penguins.csv,line=6,title=mlops validate::column 'island'" in done.stdout
    assert "### ❌ `mlops validate` failed (exit 1)" in (tmp_path / "summary.md").read_text()
    outputs = (tmp_path / "output").read_text()
    assert "passed=false\n" in outputs and "exit-code=1\n" in outputs


def test_a_config_error_is_annotated_at_its_key(repo_copy: Path, tmp_path: Path) -> None:
    config = repo_copy / "mlops.yaml"
    config.write_text(config.read_text().replace("  estimator:", "  estimatr:", 1))
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "train"], cwd=repo_copy, capture_output=True, text=True,
                          env=_github_env(tmp_path, repo_copy), timeout=300)
    assert done.returncode == 1
    train_line = next(n for n, text in enumerate(config.read_text().splitlines(), start=1) if text.startswith("train:"))
    assert f"::error file=mlops.yaml,line={train_line}," in done.stdout and "train.estimatr: unknown key" in done.stdout
    assert "exit-code=1\n" in (tmp_path / "output").read_text()


def test_drift_outputs_name_the_drifted_features(repo_copy: Path, tmp_path: Path) -> None:
    """`mlops drift`: exit 1 and the `drifted` output list when features moved."""
    import pandas as pd

    frame = pd.read_csv(repo_copy / "data" / "penguins.csv")
    frame["body_mass_g"] = (frame["body_mass_g"] * 1.3).clip(upper=6900).round()
    incoming = tmp_path / "incoming.csv"
    frame.to_csv(incoming, index=False)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "drift", "--data", str(incoming)], cwd=repo_copy,
                          capture_output=True, text=True, env=_github_env(tmp_path, repo_copy), timeout=300)
    assert done.returncode == 1, done.stderr
    outputs = (tmp_path / "output").read_text()
    assert "exit-code=1\n" in outputs and "body_mass_g" in outputs
    assert json.loads((repo_copy / "outputs" / "drift.json").read_text())["drifted"] == ["body_mass_g"]
