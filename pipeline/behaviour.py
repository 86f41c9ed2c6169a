"""Behavioural model tests declared in mlops.yaml: invariance, directional, minimum functionality.

Each test perturbs rows of the evaluation data (or builds one known row) and checks how the
model's score moves. The score is the positive-class probability for classification and the
prediction for regression. The perturbed tests run on a seeded sample of at most
`evaluate.behaviour.max_rows` rows, sharing one baseline: at 1M rows, scoring every perturbation
of the full split cost more than training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config, DirectionalTest, InvarianceTest, MinimumTest


def model_score(config: Config, model: Any, features: pd.DataFrame) -> np.ndarray:
    if config.task == "classification":
        proba = model.predict_proba(features)
        classes = [str(c) for c in model.classes_]
        positive = str(config.positive_class)
        return proba[:, classes.index(positive)] if positive in classes else proba.max(axis=1)
    return np.asarray(model.predict(features), dtype=float)


def invariance(config: Config, model: Any, features: pd.DataFrame, baseline: np.ndarray, test: InvarianceTest) -> dict[str, Any]:
    """The score may not move by more than `max_change` when only `test.column` changes."""
    worst = 0.0
    for value in test.values:
        changed = features.copy()
        changed[test.column] = pd.Series([value] * len(changed), index=changed.index, dtype=features[test.column].dtype)
        worst = max(worst, float(np.max(np.abs(model_score(config, model, changed) - baseline), initial=0.0)))
    passed = worst <= test.max_change
    return _result("invariance", test.name, passed, f"largest change {worst:.3f} (allowed {test.max_change:.3f})")


def directional(config: Config, model: Any, features: pd.DataFrame, baseline: np.ndarray,
                test: DirectionalTest) -> dict[str, Any]:
    """Adding `delta` to a numeric column must move the score the expected way in most rows."""
    changed = features.copy()
    changed[test.column] = changed[test.column] + test.delta
    moved = model_score(config, model, changed) - baseline
    agree = moved >= 0 if test.expect == "increase" else moved <= 0
    rate = float(np.mean(agree)) if len(agree) else 0.0
    passed = rate >= test.min_rate
    return _result("directional", test.name, passed, f"{rate:.0%} of rows moved as expected (need {test.min_rate:.0%})")


def minimum(config: Config, model: Any, columns: list[str], dtypes: pd.Series, test: MinimumTest) -> dict[str, Any]:
    """A hand-written case the model must get right."""
    row = pd.DataFrame([{c: test.row.get(c, np.nan) for c in columns}])
    row = row.astype({c: dtypes[c] for c in columns}, errors="ignore")
    passed, detail = known_answer(config.task, model.predict(row)[0], test)
    return _result("minimum", test.name, passed, detail)


def known_answer(task: str, predicted: Any, test: MinimumTest) -> tuple[bool, str]:
    """Whether a prediction is the known answer: the same class, or within the regression
    tolerance. Evaluate and the deploy smoke test both judge with this, so a case evaluate
    passes cannot fail on the deployed server, and the other way round."""
    if task == "classification":
        return str(predicted) == str(test.expect), f"predicted {predicted!r}, expected {test.expect!r}"
    try:
        value = float(predicted)
    except (TypeError, ValueError):
        return False, f"predicted {str(predicted)[:80]!r}, expected a number within {test.expect} ± {test.tolerance}"
    passed = bool(np.isfinite(value)) and abs(value - float(test.expect)) <= test.tolerance + 1e-9
    return passed, f"predicted {value:.4g}, expected {test.expect} ± {test.tolerance}"


def run_behaviour(config: Config, model: Any, features: pd.DataFrame) -> list[dict[str, Any]]:
    """Every behavioural test of the config, in declaration order."""
    spec = config.evaluate.behaviour
    sample = features.sample(n=spec.max_rows, random_state=config.seed) if len(features) > spec.max_rows else features
    baseline = model_score(config, model, sample) if spec.invariance or spec.directional else np.empty(0)
    results = [invariance(config, model, sample, baseline, t) for t in spec.invariance]
    results += [directional(config, model, sample, baseline, t) for t in spec.directional]
    results += [minimum(config, model, list(features.columns), features.dtypes, t) for t in spec.minimum]
    return results


def _result(kind: str, name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "passed": bool(passed), "detail": detail}
