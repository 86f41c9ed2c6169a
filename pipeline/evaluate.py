"""The model tests: quality gates, slices, fairness, behaviour, and the champion comparison.

Pure: a fitted challenger, an optional champion and the evaluation split in; a JSON-ready
result out, with `passed` per check and a `failures` list naming each failed check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.behaviour import run_behaviour
from pipeline.config import PARITY, Config, SliceGate
from pipeline.metrics import Predictions, confusion, is_better_or_equal, metric_value, metrics_of, paired_bootstrap, predict
from pipeline.train import features_and_target

PLOT_POINTS = 2000  # rows kept (seeded sample) for the predicted-vs-actual and residual plots


def gates(config: Config, metrics: dict[str, float]) -> list[dict[str, Any]]:
    results = []
    for gate in config.evaluate.gates:
        value = metrics.get(gate.metric)
        passed = value is not None and is_better_or_equal(value, gate.threshold, gate.direction)
        results.append({**gate.model_dump(), "value": value, "passed": bool(passed)})
    return results


def slice_groups(spec: SliceGate, column: pd.Series) -> list[tuple[str, float | None, float | None, np.ndarray]]:
    """The groups of one slice: (label, lower, upper, row positions). A categorical column gives
    one group per value; a numeric one the intervals [lower, upper) between its `bins` (the outer
    ones open-ended) or between its `quantiles` on these rows. Missing values form their own group."""
    if spec.bins is None and spec.quantiles is None:
        groups = column.to_frame().groupby(column.name, observed=True, dropna=False).indices
        return [(str(value), None, None, positions) for value, positions in groups.items()]
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    if spec.bins is not None:
        cuts = np.asarray(spec.bins, dtype=float)
    else:
        present = values[~np.isnan(values)]
        inner = np.linspace(0, 1, spec.quantiles + 1)[1:-1] if spec.quantiles else np.empty(0)
        cuts = np.unique(np.quantile(present, inner)) if len(present) else np.empty(0)
    edges = [-np.inf, *cuts.tolist(), np.inf]
    where = np.searchsorted(cuts, values, side="right")  # index i: edges[i] <= value < edges[i + 1]
    out = []
    for i in range(len(edges) - 1):
        positions = np.flatnonzero((where == i) & ~np.isnan(values))
        if len(positions):
            lower, upper = edges[i], edges[i + 1]
            out.append((_interval(lower, upper), None if lower == -np.inf else lower,
                        None if upper == np.inf else upper, positions))
    missing = np.flatnonzero(np.isnan(values))
    if len(missing):
        out.append(("missing", None, None, missing))
    return out


def _interval(lower: float, upper: float) -> str:
    if lower == -np.inf:
        return f"< {upper:.4g}"
    if upper == np.inf:
        return f"≥ {lower:.4g}"
    return f"[{lower:.4g}, {upper:.4g})"


def slices(config: Config, predictions: Predictions, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The metric per group of each slice column (any contract column), held within its bounds."""
    results = []
    for spec in config.evaluate.slices:
        for label, lower, upper, positions in slice_groups(spec, frame[spec.column]):
            rows = len(positions)
            entry: dict[str, Any] = {"column": spec.column, "value": label, "lower": lower, "upper": upper, "rows": rows,
                                     "metric": spec.metric, "min": spec.min, "max": spec.max}
            if rows < spec.min_rows:
                results.append({**entry, "value_metric": None, "passed": True, "note": f"fewer than {spec.min_rows} rows"})
                continue
            metric = metric_value(predictions.subset(positions), spec.metric)
            passed = metric is not None and (spec.min is None or metric >= spec.min) and (spec.max is None or metric <= spec.max)
            results.append({**entry, "value_metric": metric, "passed": bool(passed)})
    return results


def fairness(config: Config, predictions: Predictions, frame: pd.DataFrame) -> dict[str, Any] | None:
    """The largest gap between the groups of the sensitive column: in positive-prediction rate
    (demographic parity, classification) or in the chosen metric (e.g. mae for regression).
    Groups under `min_rows` rows are left out and named; fewer than two groups fail."""
    spec = config.evaluate.fairness
    if spec is None:
        return None
    groups = frame[spec.column].astype(str).to_frame().groupby(spec.column).indices
    values: dict[str, float] = {}
    small = sorted(name for name, rows in groups.items() if len(rows) < spec.min_rows)
    for name, rows in groups.items():
        if len(rows) < spec.min_rows:
            continue
        part = predictions.subset(rows)
        value = float(np.mean(part.predicted == part.positive)) if spec.metric == PARITY else metric_value(part, spec.metric)
        if value is not None and np.isfinite(value):
            values[str(name)] = float(value)
    entry = {"column": spec.column, "metric": spec.metric, "max": spec.max, "groups": values, "too_small": small}
    if len(values) < 2:
        note = f"fewer than two groups with at least {spec.min_rows} rows: the gap cannot be measured"
        return {**entry, "value": None, "passed": False, "note": note}
    gap = max(values.values()) - min(values.values())
    return {**entry, "value": gap, "passed": gap <= spec.max + 1e-12}


def champion_predictions(config: Config, champion: Any, test: pd.DataFrame,
                         target: pd.Series) -> tuple[Predictions | None, str | None]:
    """The champion's predictions on the same rows, from the columns it was trained on.

    A champion that cannot score this data (a column it needs is gone) yields an error note
    instead of a crash: the comparison is then not possible and the report says why.
    """
    if champion is None:
        return None, None
    try:
        inputs = test.drop(columns=[config.data.target])
        return predict(config.task, champion, inputs, target, config.positive_class), None
    except (KeyError, ValueError, TypeError) as exc:
        return None, f"the champion cannot score this data ({type(exc).__name__}: {str(exc)[:200]})"


def compare(config: Config, challenger: Predictions, champion: Predictions | None, source: str | None,
            error: str | None = None) -> dict[str, Any]:
    """Non-inferiority of the challenger on the same rows: the paired-bootstrap interval of the
    difference may reach at most `tolerance` into the worse direction. Passes with no champion."""
    spec = config.evaluate.champion
    if spec is None:
        return {"source": None, "passed": True, "note": "no champion comparison configured"}
    if error is not None:
        return {"source": source, "metric": spec.metric, "passed": True, "note": f"not compared: {error}; reviewers decide"}
    if champion is None:
        return {"source": None, "metric": spec.metric, "passed": True, "note": "no champion found: comparison passes"}
    new, old = metric_value(challenger, spec.metric), metric_value(champion, spec.metric)
    if new is None or old is None:
        return {"source": source, "metric": spec.metric, "passed": False, "note": f"metric {spec.metric!r} unavailable"}
    boot = paired_bootstrap(challenger, champion, spec.metric, spec.resamples, spec.confidence, config.seed)
    if boot["interval"] is None:
        return {"source": source, "metric": spec.metric, "passed": False,
                "note": f"metric {spec.metric!r} undefined on most resamples of {boot['rows']} rows"}
    low, high = boot["interval"]
    worst = low if spec.direction == "higher" else -high  # the largest plausible gain; negative: a loss
    return {
        "source": source,
        "metric": spec.metric,
        "direction": spec.direction,
        "challenger": new,
        "champion": old,
        "delta": new - old,
        "interval": [low, high],
        "confidence": spec.confidence,
        "resamples": boot["resamples"],
        "rows": boot["rows"],
        "tolerance": spec.tolerance,
        "passed": worst >= -spec.tolerance - 1e-12,
    }


def error_summary(predictions: Predictions, seed: int = 0) -> dict[str, Any]:
    """Confusion matrix (classification) or residual summary (regression)."""
    if predictions.task == "classification":
        return {"confusion_matrix": confusion(predictions)}
    residuals = predictions.truth - predictions.predicted
    levels = [5, 25, 50, 75, 95]
    values = np.quantile(residuals, [q / 100 for q in levels]).tolist() if len(residuals) else []
    quantiles = [{"name": f"p{q}", "value": v} for q, v in zip(levels, values, strict=False)]  # a list keeps the order
    keep = np.random.default_rng(seed).permutation(len(residuals))[:PLOT_POINTS]
    points = {"actual": predictions.truth[keep].tolist(), "predicted": predictions.predicted[keep].tolist()}
    return {"residuals": {"mean": float(np.mean(residuals)) if len(residuals) else None,
                          "std": float(np.std(residuals)) if len(residuals) else None,
                          "quantiles": quantiles, "points": points}}


def evaluate(config: Config, model: Any, test: pd.DataFrame, champion: Any = None,
             champion_source: str | None = None) -> dict[str, Any]:
    """Run every model test on the evaluation split."""
    features, target = features_and_target(config, test)
    predictions = predict(config.task, model, features, target, config.positive_class)
    metrics = metrics_of(predictions)
    champion_predicted, champion_error = champion_predictions(config, champion, test, target)
    result: dict[str, Any] = {
        "rows": len(test),
        "metrics": metrics,
        "champion_metrics": None if champion_predicted is None else metrics_of(champion_predicted),
        "gates": gates(config, metrics),
        "slices": slices(config, predictions, test),
        "fairness": fairness(config, predictions, test),
        "behaviour": run_behaviour(config, model, features),
        "champion": compare(config, predictions, champion_predicted, champion_source, champion_error),
        **error_summary(predictions, config.seed),
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
        return (f"slice {item['column']} {item['value']}: {item['metric']} {_fmt(item['value_metric'])} "
                f"outside {bounds(item.get('min'), item.get('max'))}")
    if kind == "fairness":
        if item.get("value") is None:
            return f"fairness {item['column']}: {item['note']}"
        what = item["metric"] if item["metric"] == PARITY else f"largest {item['metric']} gap between groups"
        return f"fairness {item['column']}: {what} {_fmt(item['value'])} > {item['max']}"
    if kind == "behaviour":
        return f"behaviour {item['kind']} '{item['name']}': {item['detail']}"
    if item.get("note"):
        return f"champion {item['metric']}: {item['note']}"
    return f"champion {item['metric']}: challenger may be worse by more than the tolerance: {champion_detail(item)}"


def champion_detail(item: dict[str, Any]) -> str:
    """Δ, its interval and the tolerance in one phrase (the report and the failure line share it)."""
    low, high = item["interval"]
    sign = "-" if item.get("direction", "higher") == "higher" else "+"
    return (f"Δ {item['delta']:+.4f}, {item['confidence']:.0%} interval [{low:+.4f}, {high:+.4f}] "
            f"(paired bootstrap, {item['resamples']} resamples of {item['rows']} rows), "
            f"non-inferior if its worse end is within {sign}{item['tolerance']}")


def bounds(low: float | None, high: float | None) -> str:
    """A check's allowed range as text: ≥ low, ≤ high or [low, high]."""
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    return f"≥ {low:g}" if low is not None else f"≤ {high:g}" if high is not None else "(no bound)"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
