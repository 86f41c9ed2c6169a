"""`mlops promote`: register the model as `challenger`; move `champion` when every gate passed."""

from __future__ import annotations

from pipeline.errors import PipelineError
from pipeline.steps.base import Context, Option, Step, StepResult
from pipeline.steps.evaluate import EvaluateResult
from pipeline.steps.train import TrainResult


class PromoteResult(StepResult):
    model: str
    version: str
    challenger: str
    champion: str | None = None
    moved: bool
    note: str | None = None

    def summary_lines(self) -> list[str]:
        moved = f"champion -> version {self.version}" if self.moved else "champion unchanged"
        return [f"promote: {self.model} version {self.version} is `challenger`; {moved}"]


def run(ctx: Context, challenger_only: bool = False) -> tuple[int, PromoteResult]:
    """Register the trained model; move the champion alias only if the evaluation passed."""
    from pipeline.promote import promote

    info = ctx.read_result(TrainResult, "train.json", "promote")
    evaluation = None if challenger_only else ctx.read_result(EvaluateResult, "evaluate.json", "promote")
    if evaluation is not None and evaluation.run_id != info.run_id:
        raise PipelineError("promote: evaluate.json belongs to another training run; run `mlops evaluate`")
    result = promote(ctx.config, info.model_dump(), evaluation.model_dump() if evaluation else {}, challenger_only)
    return 0, PromoteResult.model_validate(result)


STEP = Step(
    name="promote",
    help="register the model as `challenger`; move `champion` if every gate passed",
    sections=("promote",),
    reads=("train.json", "evaluate.json"),
    writes=("promote.json",),
    result=PromoteResult,
    result_file="promote.json",
    run=run,
    options=(Option("--challenger-only", "register and alias `challenger`, never `champion`", is_switch=True),),
    action_outputs={"model-version": "version", "moved": "moved", "result": "@promote.json"},
    in_run=False,
)
