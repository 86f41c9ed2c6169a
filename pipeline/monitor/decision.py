"""Measure live rows and decide: live metrics with evaluate's definitions (`pipeline.metrics`),
drift with validate's code (`pipeline.drift`), and an N-of-M rule over buckets of the window.

Why N of M: one bad hour is noise, a bad week is a trend. The window is split into
`monitor.buckets` equal spans of time (equal runs of rows when the data has no timestamps);
retraining is warranted when at least `monitor.breaches` of them breach. A bucket below the
minimum sample size is "not enough data": it neither breaches nor clears.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pipeline.monitor.source import PREDICTION, SCORE, TS

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.config import Config, Gate
    from pipeline.metrics import Predictions

RETRAIN, HEALTHY, NOT_ENOUGH = "retrain", "healthy", "not enough data"


def live_predictions(config: Config, frame: pd.DataFrame) -> Predictions | None:
    """The labelled rows that carry a prediction, as evaluate's `Predictions` (None when none)."""
    import numpy as np
    import pandas as pd

    from pipeline.metrics import Predictions

    target = config.data.target
    rows = frame[frame[target].notna() & frame[PREDICTION].notna()]
    if rows.empty:
        return None
    if config.task == "regression":
        return Predictions("regression", rows[target].to_numpy(float), rows[PREDICTION].to_numpy(float))
    truth, predicted = rows[target].astype(str), rows[PREDICTION].astype(str)
    allowed = config.validate_.columns[target].allowed or []
    classes = tuple(sorted(set(allowed) | set(truth) | set(predicted)))  # scikit-learn orders classes_ so
    positive = classes.index(config.positive_class) if config.positive_class in classes else None
    proba = None
    scores = pd.to_numeric(rows[SCORE], errors="coerce")
    if len(classes) == 2 and positive is not None and scores.notna().all():
        proba = np.empty((len(rows), 2))
        proba[:, positive], proba[:, 1 - positive] = scores.to_numpy(float), 1.0 - scores.to_numpy(float)
    codes = {name: i for i, name in enumerate(classes)}
    return Predictions("classification", truth.map(codes).to_numpy(np.int64), predicted.map(codes).to_numpy(np.int64),
                       proba, classes, positive)


def live_metrics(config: Config, frame: pd.DataFrame) -> dict[str, float | None]:
    from pipeline.metrics import metrics_of

    predictions = live_predictions(config, frame)
    if predictions is None:
        return {}
    return {name: (value if math.isfinite(value) else None) for name, value in metrics_of(predictions).items()}


def gate_results(gates: list[Gate], metrics: dict[str, float | None]) -> list[dict[str, Any]]:
    from pipeline.metrics import is_better_or_equal

    out = []
    for gate in gates:
        value = metrics.get(gate.metric)
        passed = None if value is None else is_better_or_equal(value, gate.threshold, gate.direction)
        out.append({"metric": gate.metric, "threshold": gate.threshold, "direction": gate.direction, "value": value,
                    "passed": passed})
    return out


def measure(config: Config, frame: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Any]:
    """Drift and live metrics of one set of rows, each only above its minimum sample size."""
    from pipeline.drift import drift_report

    settings = config.monitor
    labelled = int((frame[config.data.target].notna() & frame[PREDICTION].notna()).sum())
    out: dict[str, Any] = {"rows": len(frame), "labelled": labelled, "drifted": [], "metrics": {}, "failing": []}
    notes = []
    if len(frame) >= settings.min_rows:
        drift = drift_report(config, frame, reference)
        out["drift"], out["drifted"] = drift, drift["drifted"]
    else:
        notes.append(f"{len(frame)} rows < min_rows {settings.min_rows}: drift not judged")
    if labelled >= settings.min_labelled:
        out["metrics"] = live_metrics(config, frame)
        gates = gate_results(settings.gates if settings.gates is not None else config.evaluate.gates, out["metrics"])
        out["gates"] = gates
        out["failing"] = [g["metric"] for g in gates if g["passed"] is False]
    else:
        notes.append(f"{labelled} labelled rows < min_labelled {settings.min_labelled}: live metrics not judged")
    judged = len(frame) >= settings.min_rows or labelled >= settings.min_labelled
    out["status"] = ("breach" if out["drifted"] or out["failing"] else "ok") if judged else NOT_ENOUGH
    out["notes"] = notes
    return out


def buckets(frame: pd.DataFrame, count: int, start: float | None, end: float | None) -> list[tuple[pd.DataFrame, dict[str, Any]]]:
    """The rows split into `count` buckets: equal spans of [start, end] when the rows have times,
    else equal runs of rows in file order."""
    import numpy as np

    if start is not None and end is not None and frame[TS].notna().all() and len(frame):
        span = (end - start) / count
        index = np.clip(((frame[TS].to_numpy(float) - start) // span).astype(int), 0, count - 1)
        return [(frame[index == i], {"start": start + i * span, "end": start + (i + 1) * span}) for i in range(count)]
    parts = np.array_split(np.arange(len(frame)), count)
    return [(frame.iloc[part], {"first_row": int(part[0]) if len(part) else None}) for part in parts]


def decide(config: Config, frame: pd.DataFrame, reference: pd.DataFrame, start: float | None,
           end: float | None) -> dict[str, Any]:
    """The whole window measured, each bucket measured, and the verdict of the N-of-M rule."""
    settings = config.monitor
    window = measure(config, frame, reference)
    measured = []
    for i, (rows, span) in enumerate(buckets(frame, settings.buckets, start, end)):
        item = measure(config, rows, reference)
        item.pop("drift", None)  # per-feature detail is kept for the whole window only
        measured.append({"index": i, **span, **item})
    breaches = sum(b["status"] == "breach" for b in measured)
    judged = sum(b["status"] != NOT_ENOUGH for b in measured)
    if breaches >= settings.breaches:
        verdict = RETRAIN
        headline = f"Retraining warranted: {breaches} of {settings.buckets} buckets breached (rule: {settings.breaches})"
    elif judged == 0:
        verdict = NOT_ENOUGH
        headline = (f"Not enough data: no bucket reached {settings.min_rows} rows or {settings.min_labelled} "
                    f"labelled rows ({len(frame)} rows, {window['labelled']} labelled in the window)")
    else:
        verdict = HEALTHY
        headline = f"Healthy: {breaches} of {settings.buckets} buckets breached (rule: {settings.breaches})"
    return {
        "verdict": verdict,
        "headline": headline,
        "retrain_warranted": verdict == RETRAIN,
        "rule": (f"retrain when at least {settings.breaches} of {settings.buckets} buckets breach: a drifted "
                 f"feature (>= {settings.min_rows} rows) or a live metric failing its gate "
                 f"(>= {settings.min_labelled} labelled rows)"),
        "breaches": breaches,
        "rows": window["rows"],
        "labelled": window["labelled"],
        "window_status": window["status"],
        "drift": window.get("drift") or {},
        "metrics": window["metrics"],
        "gates": window.get("gates") or [],
        "buckets": measured,
    }
