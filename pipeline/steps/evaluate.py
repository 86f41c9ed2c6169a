"""`mlops evaluate`: the model tests on the held-out split, against the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.errors import PipelineError
from pipeline.steps.base import Annotation, Context, Option, Step, StepResult
from pipeline.steps.train import TrainResult


class EvaluateResult(StepResult):
    passed: bool
    failures: list[str]
    run_id: str
    champion_version: str | None = None
    metrics: dict[str, float | None]
    champion: dict[str, Any]
    gates: list[dict[str, Any]] = Field(default_factory=list)
    slices: list[dict[str, Any]] = Field(default_factory=list)
    fairness: dict[str, Any] | None = None
    behaviour: list[dict[str, Any]] = Field(default_factory=list)

    def annotations(self) -> list[Annotation]:
        """Each failed check, pointing at the mlops.yaml entry that declares it."""
        from pipeline.evaluate import failure_line

        found = []
        for i, gate in enumerate(self.gates):
            if not gate["passed"]:
                found.append(Annotation("error", failure_line("gate", gate), config_key=f"evaluate.gates.{i}"))
        for item in self.slices:
            if not item["passed"]:
                found.append(Annotation("error", failure_line("slice", item), config_key="evaluate.slices"))
        if self.fairness and not self.fairness["passed"]:
            found.append(Annotation("error", failure_line("fairness", self.fairness), config_key="evaluate.fairness"))
        for item in self.behaviour:
            if not item["passed"]:
                key = f"evaluate.behaviour.{item['kind']}"
                found.append(Annotation("error", failure_line("behaviour", item), config_key=key))
        if not self.champion.get("passed", True):
            found.append(Annotation("error", failure_line("champion", self.champion), config_key="evaluate.champion"))
        return found

    def summary_lines(self) -> list[str]:
        lines = [f"evaluate: FAIL {line}" for line in self.failures]
        lines.append(f"evaluate: champion: {self.champion.get('note') or self.champion.get('source')}")
        lines.append(f"evaluate: {'passed' if self.passed else 'failed'} ({len(self.failures)} failing check(s))")
        return lines


def load_champion(ctx: Context, override: str | None) -> tuple[Any, str | None, str | None]:
    """The champion model, where it came from, and its registry version (None when not from the
    registry): --champion path, else registry alias `champion`, else evaluate.champion.path."""
    from pipeline import tracking
    from pipeline.config import resolve

    config = ctx.config
    if override:
        if not (Path(override) / "MLmodel").is_file():
            raise PipelineError(f"evaluate: --champion {override}: not an MLflow model directory (no MLmodel file)")
        return tracking.load_model(override), override, None
    version = tracking.alias_version(config, tracking.CHAMPION)
    if version is not None:
        uri = tracking.alias_uri(config, tracking.CHAMPION)
        return tracking.load_model(uri), f"{uri} (version {version})", version
    spec = config.evaluate.champion
    if spec is not None and spec.path is not None:
        path = resolve(config, spec.path)
        if (path / "MLmodel").is_file():
            return tracking.load_model(str(path)), str(spec.path), None
    return None, None, None


def run(ctx: Context, champion: str | None = None) -> tuple[int, EvaluateResult]:
    """Model tests against the held-out split; exit 1 if any check fails."""
    from pipeline import tracking
    from pipeline.data import split
    from pipeline.evaluate import evaluate

    info = ctx.read_result(TrainResult, "train.json", "evaluate")
    model_dir = ctx.paths.model_dir
    if not (model_dir / "MLmodel").is_file():
        raise PipelineError(f"evaluate: {model_dir} not found; run `mlops train` first")
    model = ctx.trained if ctx.trained is not None else tracking.load_model(str(model_dir))
    champion_model, source, version = load_champion(ctx, champion)
    _, test = split(ctx.config, ctx.data())
    result = evaluate(ctx.config, model, test, champion_model, source)
    typed = EvaluateResult.model_validate({**result, "run_id": info.run_id, "champion_version": version})
    return (0 if typed.passed else 1), typed


STEP = Step(
    name="evaluate",
    help="quality gates, behaviour, slices, fairness, champion comparison",
    sections=("evaluate",),
    reads=("train.json", "model"),
    writes=("evaluate.json",),
    result=EvaluateResult,
    result_file="evaluate.json",
    run=run,
    options=(Option("--champion", "MLflow model directory of the champion (overrides the registry and evaluate.champion.path)",
                    metavar="DIR"),),
    reads_data=True,
    action_outputs={"passed": "passed", "result": "@evaluate.json"},
)
