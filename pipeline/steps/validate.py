"""`mlops validate`: the data contract, leakage and drift checks on the configured data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from pipeline.steps.base import Annotation, Context, Option, Step, StepResult, say


class DataProblem(BaseModel):
    check: str
    column: str | None = None
    expected: str
    observed: str
    line: int | None = None  # the first offending file line (header = 1), when one row is at fault

    def text(self) -> str:
        where = f"column {self.column!r}: " if self.column else ""
        return f"{where}{self.check}: expected {self.expected}, observed {self.observed}"


class ValidateResult(StepResult):
    passed: bool
    rows: int
    source: str
    data_hash: str = ""
    problems: list[DataProblem] = Field(default_factory=list)
    warnings: list[DataProblem] = Field(default_factory=list)
    checks_run: list[str] = Field(default_factory=list)
    leakage: dict[str, Any] = Field(default_factory=dict)
    drift: dict[str, Any] = Field(default_factory=dict)

    def annotations(self) -> list[Annotation]:
        def one(level: str, item: DataProblem) -> Annotation:
            key = f"validate.columns.{item.column}" if item.column else None
            file = self.source if item.line is not None else None
            return Annotation(level, item.text(), file=file, line=item.line, config_key=None if file else key)

        return [one("error", p) for p in self.problems] + [one("warning", w) for w in self.warnings]

    def summary_lines(self) -> list[str]:
        if self.passed:
            return [f"validate: {self.source} passed {len(self.checks_run)} checks on {self.rows} rows"]
        return [f"validate: {len(self.problems)} problem(s) in {self.source}"]


def check_file(ctx: Context, path: Path) -> ValidateResult:
    """Contract, leakage and drift checks on one file (pure apart from reading it)."""
    from pipeline.validate import validate

    report = validate(ctx.config, ctx.table(path), ctx.reference(), source=str(path))
    return ValidateResult.model_validate({**report, "data_hash": ctx.file_hash(path)})


def run(ctx: Context, data: str | None = None) -> tuple[int, ValidateResult]:
    """Check the configured data (or `--data FILE`, written to validate-data.json instead)."""
    path = Path(data) if data else ctx.data_path
    result = check_file(ctx, path)
    for item in result.problems:
        say(f"validate: {item.text()}")
    for item in result.warnings:
        say(f"validate: warning: {item.text()}")
    return (0 if result.passed else 1), result


STEP = Step(
    name="validate",
    help="check the data contract, leakage and drift",
    sections=("data", "validate"),
    reads=(),
    writes=("validate.json",),
    result=ValidateResult,
    result_file="validate.json",
    run=run,
    options=(Option("--data", "check this file against the contract instead of the configured data", metavar="FILE"),),
    reads_data=True,
    check_only_option="data",
    action_outputs={"passed": "passed", "result": "@validate.json"},
)
