"""The model tests: quality gates, slices, fairness, behaviour, and the champion comparison.

Pure: a fitted challenger, an optional champion and the evaluation split in; a JSON-ready
result out, with `passed` per check and a `failures` list naming each failed check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.behaviour import run_behaviour
from pipeline.config import Config
from pipeline.metrics import Predictions, confusion, is_better_or_equal, metrics_of, predict
from pipeline.train import features_and_target


def gates(config: Config, metrics: dict[str, float]) -> list[dict[str, Any]]:
    results = []
    for gate in config.evaluate.gates:
        value = metrics.get(gate.metric)
        passed = value is not None and is_better_or_equal(value, gate.threshold, gate.direction)
        results.append({**gate.model_dump(), "value": value, "passed": bool(passed)})
    return results


def slices(config: Config, predictions: Predictions, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The metric per value of each slice column (any contract column), against its floor."""
    results = []
    for spec in config.evaluate.slices:
        for value, positions in frame.groupby(spec.column, observed=True, dropna=False).indices.items():
            rows = len(positions)
            entry: dict[str, Any] = {"column": spec.column, "value": str(value), "rows": rows, "metric": spec.metric}
            if rows < spec.min_rows:
                results.append({**entry, "value_metric": None, "passed": True, "note": f"fewer than {spec.min_rows} rows"})
                continue
            metric = metrics_of(predictions.subset(positions)).get(spec.metric)
            passed = metric is not None and (spec.min is None or metric >= spec.min) and (spec.max is None or metric <= spec.max)
            results.append({**entry, "value_metric": metric, "min": spec.min, "max": spec.max, "passed": bool(passed)})
    return results


def fairness(config: Config, predictions: Predictions, frame: pd.DataFrame) -> dict[str, Any] | None:
    """Demographic parity difference: the spread of positive-prediction rates across groups."""
    spec = config.evaluate.fairness
    if spec is None:
        return None
    if config.task != "classification":
        return {"column": spec.column, "metric": spec.metric, "passed": True, "note": "classification only; skipped"}
    positive = pd.Series(predictions.predicted == predictions.positive, index=frame.index)
    rates = positive.groupby(frame[spec.column].astype(str)).mean()
    gap = float(rates.max() - rates.min()) if len(rates) else 0.0
    return {
        "column": spec.column,
        "metric": spec.metric,
        "value": gap,
        "max": spec.max,
        "rates": {str(k): float(v) for k, v in rates.items()},
        "passed": gap <= spec.max,
    }


def champion_scores(config: Config, champion: Any, test: pd.DataFrame,
                    target: pd.Series) -> tuple[dict[str, float] | None, str | None]:
    """The champion's metrics on the same rows, from the columns it was trained on.

    A champion that cannot score this data (a column it needs is gone) yields an error note
    instead of a crash: the comparison is then not possible and the report says why.
    """
    if champion is None:
        return None, None
    try:
        inputs = test.drop(columns=[config.data.target])
        return metrics_of(predict(config.task, champion, inputs, target, config.positive_class)), None
    except (KeyError, ValueError, TypeError) as exc:
        return None, f"the champion cannot score this data ({type(exc).__name__}: {str(exc)[:200]})"


def compare(
    config: Config, challenger: dict[str, float], champion: dict[str, float] | None, source: str | None, error: str | None = None
) -> dict[str, Any]:
    """Challenger against champion on the same data; passes when there is no champion."""
    spec = config.evaluate.champion
    if spec is None:
        return {"source": None, "passed": True, "note": "no champion comparison configured"}
    if error is not None:
        return {"source": source, "metric": spec.metric, "passed": True, "note": f"not compared: {error}; reviewers decide"}
    if champion is None:
        return {"source": None, "metric": spec.metric, "passed": True, "note": "no champion found: comparison passes"}
    new, old = challenger.get(spec.metric), champion.get(spec.metric)
    if new is None or old is None:
        return {"source": source, "metric": spec.metric, "passed": False, "note": f"metric {spec.metric!r} unavailable"}
    delta = new - old
    regression = -delta if spec.direction == "higher" else delta
    return {
        "source": source,
        "metric": spec.metric,
        "challenger": new,
        "champion": old,
        "delta": delta,
        "tolerance": spec.tolerance,
        "passed": regression <= spec.tolerance + 1e-12,
    }


def error_summary(predictions: Predictions) -> dict[str, Any]:
    """Confusion matrix (classification) or residual summary (regression)."""
    if predictions.task == "classification":
        return {"confusion_matrix": confusion(predictions)}
    residuals = predictions.truth - predictions.predicted
    quantiles = np.quantile(residuals, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist() if len(residuals) else []
    named = dict(zip(["p5", "p25", "p50", "p75", "p95"], quantiles, strict=False))
    return {"residuals": {"mean": float(np.mean(residuals)), "std": float(np.std(residuals)), "quantiles": named}}


def evaluate(config: Config, model: Any, test: pd.DataFrame, champion: Any = None,
             champion_source: str | None = None) -> dict[str, Any]:
    """Run every model test on the evaluation split."""
    features, target = features_and_target(config, test)
    predictions = predict(config.task, model, features, target, config.positive_class)
    metrics = metrics_of(predictions)
    champion_metrics, champion_error = champion_scores(config, champion, test, target)
    result: dict[str, Any] = {
        "rows": len(test),
        "metrics": metrics,
        "champion_metrics": champion_metrics,
        "gates": gates(config, metrics),
        "slices": slices(config, predictions, test),
        "fairness": fairness(config, predictions, test),
        "behaviour": run_behaviour(config, model, features),
        "champion": compare(config, metrics, champion_metrics, champion_source, champion_error),
        **error_summary(predictions),
    }
    result["failures"] = failures(result)
    result["passed"] = not result["failures"]
    return result


def failures(result: dict[str, Any]) -> list[str]:
    """One line per failed check, naming it."""
    lines = [failure_line("gate", g) for g in result["gates"] if not g["passed"]]
    lines += [failure_line("slice", s) for s in result["slices"] if not s["passed"]]
    fair = result["fairness"]
    if fair and not fair["passed"]:
        lines.append(failure_line("fairness", fair))
    lines += [failure_line("behaviour", b) for b in result["behaviour"] if not b["passed"]]
    if not result["champion"]["passed"]:
        lines.append(failure_line("champion", result["champion"]))
    return lines


def failure_line(kind: str, item: dict[str, Any]) -> str:
    """The one-line description of a failed check of `kind` (gate, slice, fairness, behaviour, champion)."""
    if kind == "gate":
        sign = "≥" if item["direction"] == "higher" else "≤"
        return f"gate {item['metric']}: {_fmt(item['value'])} is not {sign} {item['threshold']}"
    if kind == "slice":
        return (f"slice {item['column']}={item['value']}: {item['metric']} {_fmt(item['value_metric'])} "
                f"outside [{item.get('min')}, {item.get('max')}]")
    if kind == "fairness":
        return f"fairness {item['column']}: {item['metric']} {_fmt(item['value'])} > {item['max']}"
    if kind == "behaviour":
        return f"behaviour {item['kind']} '{item['name']}': {item['detail']}"
    detail = item.get("note") or (f"{_fmt(item['challenger'])} vs champion {_fmt(item['champion'])} "
                                  f"(tolerance {item['tolerance']})")
    return f"champion {item['metric']}: challenger regresses: {detail}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
