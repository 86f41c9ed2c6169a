"""Prometheus metrics: traffic, latency, predictions, input statistics, model version.

Why aggregated updates: a 1000-row batch updates each metric once per column or class, not once
per row, so monitoring costs microseconds. Why cached label children and a single-row path:
`labels(...)` costs about a microsecond a call and NumPy's set-up more, which for one row was most
of the request's time inside the app. With several worker processes, prometheus-client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the server) sums them into one view.

Why the per-row figures are written in bulk: in multiprocess mode every update is a lock, a pid
check and a write to a memory-mapped file (about 1 us); one single-row request made 13 of them for
its inputs and predictions. They are added up in memory and written by `flush` (the app calls it
every FLUSH_SECONDS, and `render` first), so a scrape sees them at most FLUSH_SECONDS late. So are
the score and value histograms: counted per bucket (NumPy for a batch), since prometheus-client
has no bulk observe and one `observe` per row cost 0.6 ms for 1000 rows. Request counts and
latency are still written at once.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from collections import Counter as Counter_
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from pipeline.serving.contract import Contract

SCORE_BUCKETS = np.round(np.linspace(0.1, 1.0, 10), 2)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Any token is a valid HTTP method: unknown ones share one label, so clients cannot grow the series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
FLUSH_SECONDS = 0.5  # how late the per-row figures may reach /metrics (see `flush`)


def method_label(method: str) -> str:
    """The `method` label: a known method, else "other"."""
    return method if method in KNOWN_METHODS else "other"


def value_buckets(target_range: tuple[float | None, float | None]) -> tuple[float, ...]:
    """Ten equal buckets over the target's declared range, else powers of ten either side of 0."""
    low, high = target_range
    if low is not None and high is not None and high > low:
        return tuple(float(b) for b in np.linspace(low, high, 11)[1:])
    return (-1000.0, -100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass
class _Feature:
    """One contract field's metric children, looked up once."""

    name: str
    numeric: bool
    categorical: bool
    missing: Any
    count: Any
    total: Any
    categories: dict[str, Any] = field(default_factory=dict)


class Metrics:
    """Every metric the app exports, on its own registry (tests create several apps)."""

    def __init__(self, target_range: tuple[float | None, float | None] = (None, None)) -> None:
        """`target_range`: the target's declared min and max, which set the regression buckets."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("serving_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("serving_request_duration_seconds", "request latency", ["route", "method", "status"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter("serving_rows_total", "rows predicted", registry=r)
        self.predictions = Counter("serving_predictions_total", "predictions by class", ["label"], registry=r)
        # Histograms: cumulative `le` buckets, `_sum` and `_count`, as histogram_quantile expects.
        self.scores = Histogram("serving_prediction_score", "positive-class score (classification)",
                                buckets=tuple(float(b) for b in SCORE_BUCKETS), registry=r)
        self.values = Histogram("serving_prediction_value", "predicted value (regression)",
                                buckets=value_buckets(target_range), registry=r)
        self.feature_count = Counter("serving_feature_values_total", "non-missing numeric values seen", ["feature"], registry=r)
        self.feature_sum = Gauge("serving_feature_value_sum", "sum of numeric values seen (mean = sum / count)", ["feature"],
                                 registry=r, multiprocess_mode="sum")
        self.feature_missing = Counter("serving_feature_missing_total", "missing values seen", ["feature"], registry=r)
        self.category = Counter("serving_feature_category_total", "categorical values seen", ["feature", "value"], registry=r)
        self.model_info = Gauge("serving_model_info", "the model being served (value 1)", ["model_version", "git_sha"],
                                registry=r, multiprocess_mode="max")
        self.timeouts = Counter("serving_predict_timeouts_total", "predictions that exceeded the timeout", registry=r)
        self.log_written = Counter("serving_prediction_log_rows_total", "rows written to the prediction log", registry=r)
        self.log_dropped = Counter("serving_prediction_log_dropped_total",
                                   "rows the prediction log lost (the prediction was answered)", ["reason"], registry=r)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[str, Any] = {}
        self._contract: Contract | None = None
        self._feature_children: list[_Feature] = []
        self._pending: dict[Any, float] = {}  # counter or gauge child -> amount not yet written
        self._pending_lock = threading.Lock()  # batches are observed in worker threads

    def _add(self, child: Any, amount: float = 1.0) -> None:
        """Adds to `child` at the next flush (the caller holds `_pending_lock`)."""
        self._pending[child] = self._pending.get(child, 0.0) + amount

    def _add_observations(self, histogram: Histogram, values: list[float]) -> None:
        """`histogram.observe(v)` for each finite v, added at the next flush (the caller holds
        `_pending_lock`). Uses the histogram's per-bucket values and sum, which `observe` itself
        updates (as of prometheus-client 0.26; a test compares the two)."""
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return
        bounds: list[float] = histogram._upper_bounds
        buckets: list[Any] = histogram._buckets
        if len(values) < 8:  # NumPy's set-up costs more than a few bisections
            for value in values:  # observe's rule: the first bucket whose bound is >= the value
                self._add(buckets[bisect.bisect_left(bounds, value)])
        else:
            counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
            for bucket, count in zip(buckets, counts.tolist(), strict=False):
                if count:
                    self._add(bucket, count)
        self._add(histogram._sum, math.fsum(values))

    def flush(self) -> None:
        """Writes what the observe_ methods added up since the last flush."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for child, amount in pending.items():
            child.inc(amount)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request's count and latency (children cached: routes, methods, statuses are few)."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = self._request_children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def _features(self, contract: Contract) -> list[_Feature]:
        if self._contract is not contract:
            self._contract = contract
            self._feature_children = [
                _Feature(spec.name, spec.type in ("float", "int"), bool(spec.allowed) and spec.type not in ("float", "int"),
                         self.feature_missing.labels(spec.name), self.feature_count.labels(spec.name),
                         self.feature_sum.labels(spec.name))
                for spec in contract.fields]
        return self._feature_children

    def _category(self, feature: _Feature, value: object) -> Any:
        text = str(value)  # validated against the contract's allowed values: a bounded set
        child = feature.categories.get(text)
        if child is None:
            child = feature.categories[text] = self.category.labels(feature.name, text)
        return child

    def _prediction(self, label: object) -> Any:
        text = str(label)  # one of the model's classes
        child = self._prediction_children.get(text)
        if child is None:
            child = self._prediction_children[text] = self.predictions.labels(text)
        return child

    def observe_inputs(self, rows: list[dict[str, Any]], contract: Contract) -> None:
        """Per-feature count, sum, missing and category counts, one update per feature."""
        features = self._features(contract)
        add = self._add
        with self._pending_lock:
            if len(rows) == 1:
                row = rows[0]
                for feature in features:
                    value = row.get(feature.name)
                    if value is None:
                        add(feature.missing)
                    elif feature.numeric:
                        add(feature.count)
                        add(feature.total, float(value))
                    elif feature.categorical:
                        add(self._category(feature, value))
                return
            for feature in features:
                present = [v for row in rows if (v := row.get(feature.name)) is not None]
                if missing := len(rows) - len(present):
                    add(feature.missing, missing)
                if not present:
                    continue
                if feature.numeric:
                    add(feature.count, len(present))
                    add(feature.total, float(sum(present)))
                elif feature.categorical:
                    for value, count in Counter_(present).items():
                        add(self._category(feature, value), count)

    def observe_predictions(self, labels: list[object], scores: np.ndarray | None) -> None:
        """Rows, and the distribution of what was predicted: classes and positive-class scores for
        classification (`scores` given), predicted values for regression."""
        with self._pending_lock:
            self._add(self.rows, len(labels))
            if scores is None:
                self._add_observations(self.values, [float(value) for value in labels])  # type: ignore[arg-type]
                return
            if len(labels) == 1:
                self._add(self._prediction(labels[0]))
            else:
                for label, count in Counter_(map(str, labels)).items():
                    self._add(self._prediction(label), count)
            self._add_observations(self.scores, np.asarray(scores, dtype=float).tolist())

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this process's registry, or all workers' in multiprocess mode."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
