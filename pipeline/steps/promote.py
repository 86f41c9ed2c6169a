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
    registry: str | None = None  # MLOPS_MODEL_REGISTRY, when the model was pushed there
    registry_version: int | None = None
    model_digest: str | None = None
    signed: bool | None = None  # with MLOPS_MODEL_SIGNING_KEY; False: pushed unsigned
    deferred: bool = False  # --defer-champion: every gate passed, `champion` moves after the production deploy

    def summary_lines(self) -> list[str]:
        moved = f"champion -> version {self.version}" if self.moved else "champion unchanged"
        if self.deferred:
            moved = "champion moves when production is live (mlops deploy --env production)"
        lines = [f"promote: {self.model} version {self.version} is `challenger`; {moved}"]
        if self.registry is not None:
            where = "`challenger` and `champion`" if self.moved else "`challenger`"
            lines.append(f"promote: {self.registry} version {self.registry_version} ({self.model_digest}) is {where}")
            if not self.signed:
                lines.append("promote: the model was pushed unsigned (set MLOPS_MODEL_SIGNING_KEY, "
                             "or on GitHub grant the job `id-token: write`, to sign it)")
        return lines


def run(ctx: Context, challenger_only: bool = False, publish: bool = True,
        defer_champion: bool = False) -> tuple[int, PromoteResult]:
    """Register the trained model; move the champion alias only if the evaluation passed.
    `publish=False` (`mlops run`) keeps it local: nothing goes to MLOPS_MODEL_REGISTRY."""
    from pipeline.promote import promote

    info = ctx.read_result(TrainResult, "train.json", "promote")
    evaluation = None if challenger_only else ctx.read_result(EvaluateResult, "evaluate.json", "promote")
    if evaluation is not None and evaluation.run_id != info.run_id:
        raise PipelineError("promote: evaluate.json belongs to another training run; run `mlops evaluate`")
    result = promote(ctx.config, info.model_dump(), evaluation.model_dump() if evaluation else {}, challenger_only,
                     publish=publish, defer_champion=defer_champion)
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
    options=(Option("--challenger-only", "register and alias `challenger`, never `champion`", is_switch=True),
             Option("--defer-champion", "every gate must pass; move `challenger` and leave `champion` to "
                    "`mlops deploy --env production` (a deploy follows)", is_switch=True)),
    action_outputs={"model-version": "version", "moved": "moved", "result": "@promote.json",
                    "registry-version": "registry_version", "model-digest": "model_digest",
                    "deferred": "deferred"},
    in_run=False,
)
