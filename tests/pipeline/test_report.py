"""The report: verdict first, marker line, collapsible sections, Mermaid, no stale results."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config
from pipeline.report import MARKER, build_report

CONFIG = Path(__file__).resolve().parents[2] / "mlops.yaml"

VALIDATE_OK = {"passed": True, "rows": 10, "source": "data.csv", "problems": [], "warnings": [], "checks_run": ["a", "b"],
               "data_hash": "d1", "drift": {"features": {"body_mass_g": {"test": "ks", "statistic": 0.3, "p_value": 0.001,
                                                                         "psi": 0.4, "drifted": True}}}}
TRAIN = {"run_id": "r1", "data_hash": "d1", "git_sha": "abc", "model_uri": "models:/m-1", "config_hash": "c1",
         "packages": {"mlflow": "3"}}


def evaluation(passed: bool) -> dict:
    gates = [{"metric": "accuracy", "threshold": 0.8, "direction": "higher", "value": 0.9 if passed else 0.5, "passed": passed}]
    return {
        "run_id": "r1", "rows": 4, "passed": passed, "failures": [] if passed else ["gate accuracy: 0.5000 is not ≥ 0.8"],
        "metrics": {"accuracy": gates[0]["value"], "roc_auc": 0.95}, "champion_metrics": {"accuracy": 0.85, "roc_auc": 0.97},
        "gates": gates, "slices": [{"column": "island", "value": "Dream", "rows": 4, "metric": "accuracy", "value_metric": 0.75,
                                    "min": 0.7, "passed": True}],
        "fairness": {"column": "island", "metric": "demographic_parity_difference", "value": 0.1, "max": 0.5, "passed": True},
        "behaviour": [{"kind": "minimum", "name": "known", "passed": True, "detail": "ok"}],
        "champion": {"source": "models:/m@champion", "metric": "roc_auc", "challenger": 0.95, "champion": 0.97, "delta": -0.02,
                     "tolerance": 0.02, "passed": True},
        "confusion_matrix": {"labels": ["female", "male"], "matrix": [[2, 0], [1, 1]]},
    }


def test_passing_report_layout(tmp_path):
    config = load_config(CONFIG)
    markdown, summary = build_report(config, {"validate": VALIDATE_OK, "train": TRAIN, "evaluate": evaluation(True)}, tmp_path)
    lines = markdown.splitlines()
    assert lines[0] == MARKER and lines[1].startswith("## ✅")
    assert "| accuracy | 0.9000 | 0.8500 | +0.0500 🟢 | ✅ ≥ 0.8 |" in markdown
    assert "| roc_auc | 0.9500 | 0.9700 | -0.0200 🔴 |" in markdown
    assert "```mermaid\nxychart-beta" in markdown
    assert markdown.count("<details>") == markdown.count("</details>") >= 4
    assert "drift in 1 of 1 features" in markdown and "`abc`" in markdown
    assert summary["verdict"] == "pass" and summary["run_id"] == "r1"
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert summary["plots"] == ["confusion_matrix.png", "slices.png"]


def test_failing_gate_is_listed_before_the_tables(tmp_path):
    config = load_config(CONFIG)
    markdown, summary = build_report(config, {"validate": VALIDATE_OK, "train": TRAIN, "evaluate": evaluation(False)}, tmp_path)
    assert markdown.splitlines()[1].startswith("## ❌") and summary["verdict"] == "fail"
    assert markdown.index("gate accuracy: 0.5000") < markdown.index("### Metrics")


def test_failed_validation_report_names_the_problem_and_ignores_stale_outputs(tmp_path):
    config = load_config(CONFIG)
    failed = {**VALIDATE_OK, "passed": False, "data_hash": "d2",
              "problems": [{"check": "range", "column": "body_mass_g", "expected": "in [2000, 7000]",
                            "observed": "1 row outside"}]}
    markdown, summary = build_report(config, {"validate": failed, "train": TRAIN, "evaluate": evaluation(True)}, tmp_path)
    assert summary["verdict"] == "fail" and summary["metrics"] is None
    assert "Data validation failed (1 problem(s))" in markdown
    assert "range: column body_mass_g expected in [2000, 7000]" in markdown
    assert "### Metrics" not in markdown  # the old model's numbers must not appear


def test_evaluation_of_another_run_is_not_reported(tmp_path):
    config = load_config(CONFIG)
    stale = {**evaluation(True), "run_id": "old"}
    _, summary = build_report(config, {"validate": VALIDATE_OK, "train": TRAIN, "evaluate": stale}, tmp_path)
    assert summary["verdict"] == "incomplete"


def test_data_values_cannot_inject_html_or_break_tables(tmp_path):
    config = load_config(CONFIG)
    failed = {**VALIDATE_OK, "passed": False,
              "problems": [{"check": "allowed", "column": "island", "expected": "one of [Biscoe]",
                            "observed": "<unknown> | <img src=x>"}]}
    markdown, _ = build_report(config, {"validate": failed, "train": None, "evaluate": None}, tmp_path)
    assert "<unknown>" not in markdown and "<img" not in markdown
    assert "&lt;unknown&gt; \\| &lt;img src=x&gt;" in markdown
