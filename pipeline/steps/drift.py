"""`mlops drift --data FILE`: has incoming data drifted from the reference? Exit 0 no, 1 yes, 2
when the file itself is unusable (unreadable, or breaks the data contract), so a scheduler can
tell a retraining case from a broken feed by the exit code alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.errors import PipelineError
from pipeline.steps.base import Annotation, Context, Option, Step, StepResult, say
from pipeline.steps.validate import DataProblem, check_file

# Validation findings that are not defects of an incoming feed: drift and leakage are findings,
# and live data may come without its target (ground truth arrives later, if ever) or hold one class.
NOT_A_DEFECT = ("drift", "leakage.", "target", "classes")


class DriftResult(StepResult):
    source: str
    reference: str
    drifted: list[str]
    features: dict[str, Any]
    missing: list[str] = Field(default_factory=list)
    rule: str = ""

    def annotations(self) -> list[Annotation]:
        return [Annotation("warning", f"column {name!r} drifted: psi {self.features[name].get('psi')}",
                           config_key=f"validate.columns.{name}") for name in self.drifted]

    def summary_lines(self) -> list[str]:
        from pipeline.drift import summary_lines

        return summary_lines(self.model_dump())


def run(ctx: Context, data: str) -> tuple[int, DriftResult]:
    """Check the incoming file against the contract, then compare it with data.reference."""
    from pipeline.drift import drift_report

    config = ctx.config
    if config.data.reference is None:
        raise PipelineError("data.reference is not set in mlops.yaml: drift needs a reference snapshot")
    path = Path(data)
    checked = check_file(ctx, path)
    defects: list[DataProblem] = [p for p in checked.problems if not p.check.startswith(NOT_A_DEFECT)]
    if defects:
        for item in defects:
            say(f"drift: {path}: {item.text()}")
        raise PipelineError(f"drift: {path}: {len(defects)} contract problem(s): the incoming data is unusable, not drifted")
    report = drift_report(config, ctx.table(path), ctx.reference())
    result = DriftResult.model_validate({"source": str(path), "reference": str(config.data.reference), **report})
    return (1 if result.drifted else 0), result


STEP = Step(
    name="drift",
    help="compare incoming data with the reference snapshot (exit 1: drift, 2: unusable data)",
    sections=("data", "validate"),
    reads=(),
    writes=("drift.json",),
    result=DriftResult,
    result_file="drift.json",
    run=run,
    options=(Option("--data", "the incoming data to compare with data.reference", metavar="FILE", required=True),),
    action_outputs={"drifted": "drifted", "result": "@drift.json"},
    in_run=False,
    failure_code=2,
)
