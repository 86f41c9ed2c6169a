"""`mlops evaluate`: the model tests on the held-out split, against the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import PipelineError
from pipeline.steps.base import Annotation, Context, Option, Step, StepResult
from pipeline.steps.train import TrainResult


class Part(BaseModel):
    """A typed part of the result (the report reads its JSON form)."""

    model_config = ConfigDict(extra="forbid")


class ChampionComparison(Part):
    """Challenger vs champion on the same rows; `interval` is the paired-bootstrap interval of
    `delta` (challenger − champion) at `confidence`. `note` says why nothing was compared."""

    passed: bool
    source: str | None = None
    metric: str | None = None
    direction: str | None = None
    challenger: float | None = None
    champion: float | None = None
    delta: float | None = None
    interval: list[float] | None = None
    confidence: float | None = None
    resamples: int | None = None
    rows: int | None = None
    tolerance: float | None = None
    note: str | None = None


class SliceResult(Part):
    """One group of a slice: a value of a categorical column or the interval [lower, upper)."""

    column: str
    value: str
    lower: float | None = None
    upper: float | None = None
    rows: int
    metric: str
    value_metric: float | None = None
    min: float | None = None
    max: float | None = None
    passed: bool
    note: str | None = None


class FairnessResult(Part):
    """The largest gap of `metric` between the groups of `column` (`value`), against `max`."""

    column: str
    metric: str
    max: float
    value: float | None = None
    groups: dict[str, float] = Field(default_factory=dict)
    too_small: list[str] = Field(default_factory=list)
    passed: bool
    note: str | None = None


class Quantile(Part):
    name: str
    value: float


class Residuals(Part):
    """Residuals (actual − predicted) of a regression: summary, quantiles in order, and a seeded
    sample of (actual, predicted) points for the plots."""

    mean: float | None = None
    std: float | None = None
    quantiles: list[Quantile] = Field(default_factory=list)
    points: dict[str, list[float]] = Field(default_factory=dict)


class EvaluateResult(StepResult):
    passed: bool
    failures: list[str]
    run_id: str
    champion_version: str | None = None
    champion_digest: str | None = None  # from MLOPS_MODEL_REGISTRY: what promote expects `champion` to be
    metrics: dict[str, float | None]
    champion: ChampionComparison
    gates: list[dict[str, Any]] = Field(default_factory=list)
    slices: list[SliceResult] = Field(default_factory=list)
    fairness: FairnessResult | None = None
    behaviour: list[dict[str, Any]] = Field(default_factory=list)
    residuals: Residuals | None = None

    def annotations(self) -> list[Annotation]:
        """Each failed check, pointing at the mlops.yaml entry that declares it."""
        from pipeline.evaluate import failure_line

        found = []
        for i, gate in enumerate(self.gates):
            if not gate["passed"]:
                found.append(Annotation("error", failure_line("gate", gate), config_key=f"evaluate.gates.{i}"))
        for group in self.slices:
            if not group.passed:
                found.append(Annotation("error", failure_line("slice", group.model_dump()), config_key="evaluate.slices"))
        if self.fairness and not self.fairness.passed:
            found.append(Annotation("error", failure_line("fairness", self.fairness.model_dump()),
                                    config_key="evaluate.fairness"))
        for item in self.behaviour:
            if not item["passed"]:
                key = f"evaluate.behaviour.{item['kind']}"
                found.append(Annotation("error", failure_line("behaviour", item), config_key=key))
        if not self.champion.passed:
            found.append(Annotation("error", failure_line("champion", self.champion.model_dump()),
                                    config_key="evaluate.champion"))
        return found

    def summary_lines(self) -> list[str]:
        lines = [f"evaluate: FAIL {line}" for line in self.failures]
        lines.append(f"evaluate: champion: {self.champion.note or self.champion.source}")
        lines.append(f"evaluate: {'passed' if self.passed else 'failed'} ({len(self.failures)} failing check(s))")
        return lines


class Champion(NamedTuple):
    """The champion evaluate compares against: the model, where it came from (for the report),
    its registry version and, from MLOPS_MODEL_REGISTRY, its digest (promote's expected value)."""

    model: Any
    source: str | None = None
    version: str | None = None
    digest: str | None = None


def load_champion(ctx: Context, override: str | None) -> Champion:
    """--champion path; else, with MLOPS_MODEL_REGISTRY set, that registry's `champion` (and
    nothing else: it is the durable truth); else MLflow's alias `champion`, else
    evaluate.champion.path."""
    from pipeline import registry, tracking
    from pipeline.config import resolve

    config = ctx.config
    if override:
        if not (Path(override) / "MLmodel").is_file():
            raise PipelineError(f"evaluate: --champion {override}: not an MLflow model directory (no MLmodel file)")
        return Champion(tracking.load_model(override), override)
    repo = registry.configured()
    if repo is not None:
        client = registry.connect(repo)
        found = registry.describe(client, registry.CHAMPION)
        if found is None:
            return Champion(None)
        path = registry.pull(client, found.digest, ctx.paths.state / "registry")
        return Champion(tracking.load_model(str(path)), f"{repo.ref(found.digest)} (version {found.number})",
                        str(found.number), found.digest)
    version = tracking.alias_version(config, tracking.CHAMPION)
    if version is not None:
        uri = tracking.alias_uri(config, tracking.CHAMPION)
        return Champion(tracking.load_model(uri), f"{uri} (version {version})", version)
    spec = config.evaluate.champion
    if spec is not None and spec.path is not None:
        path = resolve(config, spec.path)
        if (path / "MLmodel").is_file():
            return Champion(tracking.load_model(str(path)), str(spec.path))
    return Champion(None)


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
    found = load_champion(ctx, champion)
    _, test = split(ctx.config, ctx.data())
    result = evaluate(ctx.config, model, test, found.model, found.source)
    typed = EvaluateResult.model_validate({**result, "run_id": info.run_id, "champion_version": found.version,
                                           "champion_digest": found.digest})
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
