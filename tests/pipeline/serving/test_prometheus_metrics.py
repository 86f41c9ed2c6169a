"""/metrics as Prometheus reads it: warm-up rows are not traffic, histogram buckets are cumulative,
and regression gets a prediction histogram too."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline.serving.catalog import GOOD_ROW


def samples(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


def test_warm_up_rows_are_not_counted(client) -> None:
    """The app predicted its warm-up rows three times before /ready; none of them is traffic."""
    assert samples(client.get("/metrics").text, "serving_rows_total") == {(): 0.0}
    client.post("/predict", json={"rows": [GOOD_ROW] * 3})
    assert samples(client.get("/metrics").text, "serving_rows_total") == {(): 3.0}


def test_score_histogram_buckets_are_cumulative(client) -> None:
    rows = [GOOD_ROW, {**GOOD_ROW, "body_mass_g": 3000.0, "species": "Adelie"}, {**GOOD_ROW, "flipper_length_mm": 190.0}]
    client.post("/predict", json={"rows": rows * 5})
    buckets = samples(client.get("/metrics").text, "serving_prediction_score_bucket")
    counts = [value for _, value in sorted(buckets.items(), key=lambda item: float(dict(item[0])["le"]))]
    assert counts == sorted(counts) and counts[-1] == 15.0  # le="+Inf" holds every row
    assert samples(client.get("/metrics").text, "serving_prediction_score_count") == {(): 15.0}


def test_regression_predictions_get_a_histogram_over_the_target_range() -> None:
    from pipeline.serving.metrics import Metrics

    metrics = Metrics(target_range=(0.0, 100.0))
    metrics.observe_predictions([5.0, 45.0, 55.0, 250.0], None)
    text = metrics.render()[0].decode()  # render writes what was added up (Metrics.flush)
    buckets = samples(text, "serving_prediction_value_bucket")
    assert buckets[(("le", "10.0"),)] == 1.0 and buckets[(("le", "50.0"),)] == 2.0
    assert buckets[(("le", "100.0"),)] == 3.0 and buckets[(("le", "+Inf"),)] == 4.0
    assert samples(text, "serving_prediction_value_sum") == {(): 355.0}


def test_single_rows_count_exactly_as_one_batch_of_them(contract) -> None:
    """One row takes its own path (no NumPy, cached label children): its figures must be the batch's."""
    import numpy as np

    from pipeline.serving.metrics import Metrics

    rows = [GOOD_ROW, {**GOOD_ROW, "species": "Adelie", "body_mass_g": None}, {**GOOD_ROW, "island": None}]
    labels, scores = ["male", "female", "male"], np.array([0.9, 0.2, 0.6])
    one_by_one, batched = Metrics(), Metrics()
    for index, row in enumerate(rows):
        one_by_one.observe_inputs([row], contract)
        one_by_one.observe_predictions([labels[index]], scores[index:index + 1])
    batched.observe_inputs(rows, contract)
    batched.observe_predictions(labels, scores)
    texts = [m.render()[0].decode() for m in (one_by_one, batched)]
    names = ("serving_feature_values_total", "serving_feature_value_sum", "serving_feature_missing_total",
             "serving_feature_category_total", "serving_predictions_total", "serving_prediction_score_bucket",
             "serving_rows_total")
    for name in names:
        assert samples(texts[0], name) == samples(texts[1], name) != {}, name
    assert samples(texts[0], "serving_feature_missing_total")[(("feature", "body_mass_g"),)] == 1.0


def test_per_row_figures_reach_the_registry_without_a_scrape(app, client) -> None:
    """Per-row figures are added up in memory; the app writes them every FLUSH_SECONDS, so a scrape
    answered by another worker process sees them too (this one's registry is read without render)."""
    import time

    from prometheus_client import generate_latest

    from pipeline.serving.metrics import FLUSH_SECONDS

    assert client.post("/predict", json={"rows": [GOOD_ROW] * 4}).status_code == 200
    time.sleep(FLUSH_SECONDS * 3)
    text = generate_latest(app.state.serving.metrics.registry).decode()
    assert samples(text, "serving_rows_total") == {(): 4.0}
    assert samples(text, "serving_feature_values_total")[(("feature", "body_mass_g"),)] == 4.0


def test_histograms_counted_in_bulk_read_as_prometheus_client_observes_them() -> None:
    """Scores and values are counted per bucket (NumPy for batches, bisection for a few) through
    the histogram's own bucket values: the exposition must equal one `observe` per value, bounds
    included (a value equal to a bound belongs to it), for batches and single rows alike."""
    import numpy as np
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from pipeline.serving.metrics import SCORE_BUCKETS, Metrics, value_buckets

    scores = [0.0, 0.1, 0.2, 0.25, 0.3, 0.7, 0.9, 0.95, 1.0, 0.1000001, 0.5, 0.6, 0.4, 0.8]
    values = [-5.0, 0.0, 10.0, 10.5, 99.9, 100.0, 150.0, 1e9, float("nan"), float("inf"), 42.0]
    for batch in (True, False):
        bulk = Metrics(target_range=(0.0, 100.0))
        if batch:
            bulk.observe_predictions(["a"] * len(scores), np.array(scores))
            bulk.observe_predictions(values, None)
        else:
            for score in scores:
                bulk.observe_predictions(["a"], np.array([score]))
            for value in values:
                bulk.observe_predictions([value], None)
        text = bulk.render()[0].decode()
        registry = CollectorRegistry()
        score_hist = Histogram("serving_prediction_score", "", buckets=tuple(float(b) for b in SCORE_BUCKETS), registry=registry)
        value_hist = Histogram("serving_prediction_value", "", buckets=value_buckets((0.0, 100.0)), registry=registry)
        for score in scores:
            score_hist.observe(score)
        for value in values[:-3] + values[-1:]:  # the app skips NaN and infinity
            value_hist.observe(value)
        reference = generate_latest(registry).decode()
        for name in ("serving_prediction_score_bucket", "serving_prediction_score_sum", "serving_prediction_score_count",
                     "serving_prediction_value_bucket", "serving_prediction_value_sum", "serving_prediction_value_count"):
            assert samples(text, name) == pytest.approx(samples(reference, name)), (name, batch)
