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

# A row whose score did not move counts as agreeing with a directional test. Scored in another
# batch, an unmoved score can differ from its baseline by float rounding (~1e-16).
UNMOVED = 1e-9


def model_score(config: Config, model: Any, features: pd.DataFrame) -> np.ndarray:
    if config.task == "classification":
        proba = model.predict_proba(features)
        classes = [str(c) for c in model.classes_]
        positive = str(config.positive_class)
        return proba[:, classes.index(positive)] if positive in classes else proba.max(axis=1)
    return np.asarray(model.predict(features), dtype=float)


def invariance(test: InvarianceTest, baseline: np.ndarray, scores: list[np.ndarray]) -> dict[str, Any]:
    """The score may not move by more than `max_change` when only `test.column` changes
    (`scores`: one per value of the test, in order)."""
    worst = max((float(np.max(np.abs(changed - baseline), initial=0.0)) for changed in scores), default=0.0)
    passed = worst <= test.max_change
    return _result("invariance", test.name, passed, f"largest change {worst:.3f} (allowed {test.max_change:.3f})")


def directional(test: DirectionalTest, baseline: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Adding `delta` to a numeric column must move the score the expected way in most rows."""
    moved = scores - baseline
    agree = moved >= -UNMOVED if test.expect == "increase" else moved <= UNMOVED
    rate = float(np.mean(agree)) if len(agree) else 0.0
    passed = rate >= test.min_rate
    return _result("directional", test.name, passed, f"{rate:.0%} of rows moved as expected (need {test.min_rate:.0%})")


def minimum(config: Config, test: MinimumTest, predicted: Any) -> dict[str, Any]:
    """A hand-written case the model must get right."""
    passed, detail = known_answer(config.task, predicted, test)
    return _result("minimum", test.name, passed, detail)


def with_value(features: pd.DataFrame, column: str, value: Any) -> pd.DataFrame:
    changed = features.copy()
    changed[column] = pd.Series([value] * len(changed), index=changed.index, dtype=features[column].dtype)
    return changed


def shifted(features: pd.DataFrame, column: str, delta: float) -> pd.DataFrame:
    changed = features.copy()
    changed[column] = changed[column] + delta
    return changed


def known_row(test: MinimumTest, columns: list[str], dtypes: pd.Series) -> pd.DataFrame:
    row = pd.DataFrame([{c: test.row.get(c, np.nan) for c in columns}])
    return row.astype({c: dtypes[c] for c in columns}, errors="ignore")


def scored_together(config: Config, model: Any, frames: list[pd.DataFrame]) -> list[np.ndarray]:
    """`model_score` of each frame, from one call on all of them: a forest's fixed cost per call
    (about 20 ms for 200 trees) had made eight small calls cost most of evaluate."""
    if not frames:
        return []
    scores = model_score(config, model, pd.concat(frames, ignore_index=True))
    return np.split(scores, np.cumsum([len(f) for f in frames])[:-1])


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
    """Every behavioural test of the config, in declaration order; every perturbed sample is
    scored in one model call, and the known rows in one more."""
    spec = config.evaluate.behaviour
    sample = features.sample(n=spec.max_rows, random_state=config.seed) if len(features) > spec.max_rows else features
    perturbed = [with_value(sample, t.column, value) for t in spec.invariance for value in t.values]
    perturbed += [shifted(sample, t.column, t.delta) for t in spec.directional]
    baseline, *scores = scored_together(config, model, [sample, *perturbed]) if perturbed else [np.empty(0)]
    results = []
    for t in spec.invariance:
        results.append(invariance(t, baseline, scores[:len(t.values)]))
        scores = scores[len(t.values):]
    results += [directional(t, baseline, changed) for t, changed in zip(spec.directional, scores, strict=True)]
    if spec.minimum:
        rows = pd.concat([known_row(t, list(features.columns), features.dtypes) for t in spec.minimum], ignore_index=True)
        results += [minimum(config, t, predicted) for t, predicted in zip(spec.minimum, model.predict(rows), strict=True)]
    return results


def _result(kind: str, name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "passed": bool(passed), "detail": detail}
