"""What the pipeline tells the model: the task, the feature columns by kind, the estimator.

A plain frozen dataclass owned by `model/`, so the plug-in depends on nothing around it; the
pipeline builds it from mlops.yaml (`pipeline.train.model_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class ModelSpec:
    """Everything `build_model` needs.

    Args:
        task: "classification" or "regression".
        numeric: numeric feature columns, in the order the model receives them.
        categorical: categorical (string, category, bool) feature columns, in order.
        estimator: a name in `model.estimator.ESTIMATORS` (`train.estimator`).
        params: the estimator's keyword arguments (`train.params`), over its defaults.
        seed: given to estimators that take `random_state` unless `params` sets it.
    """

    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    estimator: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: {self.task!r} is not one of {', '.join(TASKS)}")
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "categorical", tuple(self.categorical))

