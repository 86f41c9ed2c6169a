"""The pipeline's steps, each declared once in its own module (see `pipeline.steps.base.Step`).

`STEPS` is the order of the pull-request path; `mlops run` runs those with `in_run`. Add a step by
writing its module (a result model, a `run` function, one `STEP` declaration) and listing it here.
"""

from __future__ import annotations

from pipeline.steps import drift, evaluate, monitor, promote, report, train, validate
from pipeline.steps.base import Step

STEPS: tuple[Step, ...] = (validate.STEP, train.STEP, evaluate.STEP, report.STEP, promote.STEP, drift.STEP,
                         monitor.STEP)
RUN_STEPS: tuple[Step, ...] = tuple(step for step in STEPS if step.in_run)


def get(name: str) -> Step:
    return next(step for step in STEPS if step.name == name)


def downstream(name: str) -> tuple[Step, ...]:
    """The run step `name` and every run step after it: what a re-run or failure of it invalidates."""
    names = [step.name for step in RUN_STEPS]
    return RUN_STEPS[names.index(name):] if name in names else ()
