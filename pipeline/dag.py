"""The pull-request pipeline declared in one place: each step, the code and config it depends
on, and the outputs it reads and writes (file names under `outputs/`).

The step cache keys on exactly these declarations, so a step re-runs when its data, its config
section, its code or anything upstream changes, and only then.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str
    code: tuple[str, ...]
    sections: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]


SHARED_CODE = ("pipeline/config.py", "pipeline/steps.py", "pipeline/paths.py")

STEPS: tuple[Step, ...] = (
    Step(
        name="validate",
        code=("pipeline/validate.py", "pipeline/data.py", "pipeline/drift.py"),
        sections=("data", "validate"),
        reads=(),
        writes=("validate.json",),
    ),
    Step(
        name="train",
        code=(
            "pipeline/train.py",
            "pipeline/data.py",
            "pipeline/tracking.py",
            "pipeline/metrics.py",
            "model/__init__.py",
            "model/features.py",
            "model/estimator.py",
            "model/spec.py",
        ),
        sections=("data", "validate", "train"),
        reads=("validate.json",),
        writes=("train.json", "model"),
    ),
    Step(
        name="evaluate",
        code=("pipeline/evaluate.py", "pipeline/behaviour.py", "pipeline/metrics.py", "pipeline/tracking.py"),
        sections=("evaluate",),
        reads=("train.json", "model"),
        writes=("evaluate.json",),
    ),
    Step(
        name="report",
        code=("pipeline/report.py", "pipeline/charts.py"),
        sections=(),
        reads=("validate.json", "train.json", "evaluate.json"),
        writes=("report.md", "summary.json", "plots"),
    ),
)

STEP_NAMES = tuple(step.name for step in STEPS)


def downstream(name: str) -> tuple[Step, ...]:
    """The step and every step after it: what a re-run of `name` invalidates."""
    index = STEP_NAMES.index(name)
    return STEPS[index:]
