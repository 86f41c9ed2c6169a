"""`mlops report`: the Markdown peer-review report, its JSON summary and the plots."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from pipeline.files import replace_dir, staging_dir, write_text
from pipeline.steps.base import Context, Step, StepResult
from pipeline.steps.evaluate import EvaluateResult
from pipeline.steps.train import TrainResult
from pipeline.steps.validate import ValidateResult


class ReportResult(StepResult):
    verdict: str  # pass | fail | incomplete
    headline: str
    project: str
    task: str
    metrics: dict[str, float | None] | None = None
    champion: dict[str, Any] | None = None
    failures: list[str] = Field(default_factory=list)
    run_id: str | None = None
    plots: list[str] = Field(default_factory=list)

    def summary_lines(self) -> list[str]:
        return [f"report: {self.headline} (verdict: {self.verdict})"]


def _earlier(ctx: Context, model: type[Any], name: str) -> dict[str, Any] | None:
    """An earlier result when it exists and is valid; the report says what is missing instead."""
    path = ctx.output(name)
    if not path.is_file():
        return None
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8")).model_dump(mode="json")
    except (ValidationError, ValueError):
        return None


def run(ctx: Context) -> tuple[int, ReportResult]:
    """Write report.md and plots/ from whatever the steps produced (never fails on a verdict)."""
    from pipeline.report import build_report

    loaded = {"validate": _earlier(ctx, ValidateResult, "validate.json"), "train": _earlier(ctx, TrainResult, "train.json"),
              "evaluate": _earlier(ctx, EvaluateResult, "evaluate.json")}
    plots = staging_dir(ctx.paths.plots)
    markdown, summary = build_report(ctx.config, loaded, plots_dir=plots)
    replace_dir(plots, ctx.paths.plots)
    write_text(ctx.paths.report_md, markdown)
    return 0, ReportResult.model_validate(summary)


STEP = Step(
    name="report",
    help="write the Markdown peer-review report",
    sections=(),
    reads=("validate.json", "train.json", "evaluate.json"),
    writes=("report.md", "summary.json", "plots"),
    result=ReportResult,
    result_file="summary.json",
    run=run,
    action_outputs={"verdict": "verdict", "report": "@report.md", "summary": "@summary.json"},
)
