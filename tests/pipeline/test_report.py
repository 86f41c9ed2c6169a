"""The report: verdict first, marker line, collapsible sections, Mermaid, no stale results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.report import MARKER, build_report

CONFIG = Path(__file__).resolve().parents[2] / "mlops.yaml"
_GATE = importlib.util.spec_from_file_location("report_gate", CONFIG.parent / ".github" / "scripts" / "report_gate.py")
gate = importlib.util.module_from_spec(_GATE)  # type: ignore[arg-type]
_GATE.loader.exec_module(gate)  # type: ignore[union-attr]

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
        "champion": {"source": "models:/m@champion", "metric": "roc_auc", "direction": "higher", "challenger": 0.95,
                     "champion": 0.97, "delta": -0.02, "interval": [-0.018, 0.004], "confidence": 0.95, "resamples": 1000,
                     "rows": 84, "tolerance": 0.02, "passed": True},
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
    assert summary["plots"] == ["confusion_matrix.png", "slices_accuracy.png"]
    assert ("roc_auc 0.9500 vs 0.9700: Δ -0.0200, 95% interval [-0.0180, +0.0040] (paired bootstrap, 1000 resamples "
            "of 84 rows), non-inferior if its worse end is within -0.02") in markdown
    assert "| `island` | `Dream` | 4 | accuracy | 0.75 | ≥ 0.7 | ✅ |" in markdown


def test_log_loss_is_never_drawn_on_the_accuracy_axis(tmp_path):
    evaluate = evaluation(True)
    evaluate["metrics"] = {**evaluate["metrics"], "log_loss": 0.31}
    markdown, _ = build_report(load_config(CONFIG), {"validate": VALIDATE_OK, "train": TRAIN, "evaluate": evaluate}, tmp_path)
    charts = [c for c in markdown.split("```mermaid")[1:]]
    score = next(c for c in charts if "1 is perfect" in c)
    assert '"accuracy"' in score and '"log_loss"' not in score and "0 --> 1" in score
    assert any('"log_loss"' in c and "lower is better" in c for c in charts)


def test_unconfigured_checks_say_so_instead_of_zero_of_zero(tmp_path):
    evaluate = {**evaluation(True), "slices": [], "behaviour": [], "fairness": None}
    markdown, _ = build_report(load_config(CONFIG), {"validate": VALIDATE_OK, "train": TRAIN, "evaluate": evaluate}, tmp_path)
    for check in ("slices", "behavioural tests", "fairness"):
        assert f"| {check} | ➖ | not configured |" in markdown
    assert "0/0" not in markdown


def test_confusion_matrix_counts_contrast_with_their_cells() -> None:
    from matplotlib.colors import to_rgb

    from pipeline.charts import confusion_figure

    figure = confusion_figure({"labels": ["no", "yes"], "matrix": [[47, 3], [2, 48]]})
    colours = {text.get_text(): to_rgb(text.get_color()) for text in figure.axes[0].texts}
    assert colours["47"] == colours["48"] == (1.0, 1.0, 1.0)  # on dark blue
    assert colours["3"] == colours["2"] == (0.0, 0.0, 0.0)  # on near-white


@pytest.fixture(scope="module")
def regression_report(tmp_path_factory):
    """A report on a generated regression project, its result read back from evaluate.json as
    `mlops report` reads it (the JSON is written with sorted keys)."""
    from pipeline.data import read_table
    from pipeline.evaluate import evaluate
    from pipeline.files import write_json
    from pipeline.steps.evaluate import EvaluateResult
    from pipeline.train import train
    from tests.pipeline.generated import regression_config, regression_frame, write_project

    root = tmp_path_factory.mktemp("regression-report")
    config = load_config(write_project(root, regression_frame(), regression_config()))
    fitted = train(config, read_table(config.root / config.data.path, config))
    result = EvaluateResult.model_validate({**evaluate(config, fitted.model, fitted.test), "run_id": "r1"})
    write_json(root / "evaluate.json", result.model_dump(mode="json"))
    loaded = EvaluateResult.model_validate_json((root / "evaluate.json").read_text()).model_dump(mode="json")
    markdown, summary = build_report(config, {"validate": VALIDATE_OK, "train": TRAIN, "evaluate": loaded}, root / "plots")
    return markdown, summary, root / "plots"


def test_regression_report_charts_by_direction_and_scale(regression_report):
    markdown, _, _ = regression_report
    charts = markdown.split("```mermaid")[1:]
    unit = [c for c in charts if "1 is perfect" in c]
    assert len(unit) == 1 and '"r2"' in unit[0] and '"rmse"' not in unit[0] and '"mae"' not in unit[0]
    target_units = next(c for c in charts if "in target units" in c)
    assert '"rmse", "mae"' in target_units and "0 --> 1\n" not in target_units
    slice_chart = next(c for c in charts if "by slice" in c)
    assert 'title "mae by slice (lower is better)"' in slice_chart and 'y-axis "mae"' in slice_chart
    assert '"x0 < ' in slice_chart and '"region=east"' in slice_chart
    assert "| fairness | ✅ | largest mae gap between groups of `region` =" in markdown


def test_regression_residual_quantiles_in_numeric_order(regression_report):
    markdown, _, _ = regression_report
    names = [line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| p")]
    assert names == ["p5", "p25", "p50", "p75", "p95"]


def test_regression_plots_predicted_vs_actual_and_residuals(regression_report):
    _, summary, plots = regression_report
    assert summary["plots"] == ["predicted_vs_actual.png", "residuals.png", "slices_mae.png"]
    assert all((plots / name).stat().st_size > 5000 for name in summary["plots"])


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
    assert "`range`: column `body_mass_g` expected `in [2000, 7000]`" in markdown
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
    assert "`<unknown> \\| <img src=x>`" in markdown  # a code span: GitHub shows it as text
    assert gate.check_markdown(markdown.encode()) == []


@pytest.mark.parametrize("value", ["@octocat", "@acme/maintainers", "[x](/etc/passwd)", "[x](javascript:alert(1))",
                                   "a`b", "`tick", "x``y``", "<!-- hidden -->", "![i](https://e.example/p.png)",
                                   "line\nbreak", "bell\x07"])
def test_data_values_reach_the_report_as_text_the_gate_accepts(tmp_path, value):
    """A category or column name may hold a mention, a link or HTML: the report shows it verbatim
    in a code span, which the comment gate lets through and GitHub renders as text."""
    config = load_config(CONFIG)
    failed = {**VALIDATE_OK, "passed": False,
              "problems": [{"check": "allowed", "column": "island", "expected": "one of [Biscoe]", "observed": value}]}
    markdown, _ = build_report(config, {"validate": failed, "train": None, "evaluate": None}, tmp_path)
    assert gate.check_markdown(markdown.encode()) == []
    shown = " ".join(value.replace("\n", " ").replace("\x07", " ").split())
    assert any(shown in line for line in markdown.splitlines())
