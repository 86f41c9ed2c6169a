"""The serving app in process (a real server in a thread, real model): routes, limits, errors, metrics."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.serving.catalog import BAD_REQUESTS, GOOD_ROW
from tests.pipeline.serving.live import in_thread


def test_ready_health_version(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    version = client.get("/version").json()
    assert version["model_version"] == "7" and version["git_sha"] == "abc123"
    assert set(version) == {"git_sha", "model_version", "model_uri", "data_hash", "image_digest"}


def test_predict_one_row_known_answer(client, config) -> None:
    cases = config.evaluate.behaviour.minimum
    rows = [{k: v for k, v in case.row.items() if k in config.feature_columns} for case in cases]
    answer = client.post("/predict", json={"rows": rows}).json()
    assert answer["predictions"] == [case.expect for case in cases]
    assert answer["classes"] == ["female", "male"]
    assert all(abs(sum(p) - 1) < 1e-6 for p in answer["probabilities"])  # the graph computes in float32


def test_onnxruntime_answers_as_scikit_learn(app, client, model_dir, contract) -> None:
    """The app serves the verified graph, and its answers are scikit-learn's (labels equal,
    probabilities within the build's tolerance) on generated rows with missing values."""
    import numpy as np

    from pipeline.delivery import onnx
    from pipeline.serving import predictor

    assert app.state.serving.predictor.runtime == "onnxruntime"
    rows = onnx.generated_rows(contract, 300, seed=5)
    answer = client.post("/predict", json={"rows": rows}).json()
    expected = predictor.load_sklearn(model_dir, contract).predict_rows(rows)
    assert answer["predictions"] == expected.predictions
    assert np.allclose(answer["probabilities"], expected.probabilities, rtol=onnx.RTOL, atol=onnx.ATOL)


def test_predict_batch_with_missing_nullable_values(client) -> None:
    rows = [GOOD_ROW, {**GOOD_ROW, "delta_15n": None}, {k: v for k, v in GOOD_ROW.items() if k != "delta_13c"}]
    answer = client.post("/predict", json={"rows": rows * 300})
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 900


def test_integers_accepted_for_float_fields(client) -> None:
    assert client.post("/predict", json={"rows": [{**GOOD_ROW, "body_mass_g": 5800}]}).status_code == 200


@pytest.mark.parametrize(("name", "body", "content_type", "status", "field"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_documented_status(client, name, body, content_type, status, field) -> None:
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text[:300]
    payload = response.json()
    assert payload["detail"]
    if status == 422 and field:
        named = {str(part) for error in payload["errors"] for part in error["loc"]}
        assert field in named, payload


def test_documented_statuses_match_openapi(client) -> None:
    doc = client.get("/openapi.json").json()
    documented = set(doc["paths"]["/predict"]["post"]["responses"])
    assert {str(b[3]) for b in BAD_REQUESTS} <= documented
    row = doc["components"]["schemas"]["Row"]
    assert row["additionalProperties"] is False
    assert row["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert row["properties"]["body_mass_g"]["maximum"] == 7000


def test_metrics_cover_traffic_inputs_predictions_and_version(client) -> None:
    client.post("/predict", json={"rows": [GOOD_ROW, {**GOOD_ROW, "delta_15n": None}]})
    client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert 'serving_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'serving_requests_total{method="POST",route="/predict",status="400"}' in text
    assert "serving_request_duration_seconds_bucket" in text
    assert 'serving_feature_missing_total{feature="delta_15n"}' in text
    assert 'serving_feature_value_sum{feature="body_mass_g"}' in text
    assert 'serving_feature_category_total{feature="species",value="Gentoo"}' in text
    assert 'serving_predictions_total{label="male"}' in text
    assert 'serving_model_info{git_sha="abc123",model_version="7"} 1.0' in text


def test_not_ready_before_warm_up(model_dir, contract) -> None:
    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings

    app = create_app(Settings(model_dir=model_dir), contract)
    with in_thread(app, lifespan=False) as plain:  # no lifespan: the model is never loaded
        assert plain.get("/ready").status_code == 503
        assert plain.post("/predict", json={"rows": [GOOD_ROW]}).status_code == 503
        assert plain.get("/health").status_code == 200


def test_draining_flips_readiness_and_closes_connections(app, client) -> None:
    app.state.serving.draining = True
    response = client.get("/ready")
    assert response.status_code == 503 and response.json()["detail"] == "draining"
    assert response.headers["connection"] == "close"


def test_prediction_timeout_answers_503(model_dir, contract) -> None:
    import time

    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings

    app = create_app(Settings(model_dir=model_dir, predict_timeout=0.2, onnx=False), contract)
    with in_thread(app) as slow_client:
        predictor = app.state.serving.predictor
        original = predictor.predict_rows
        predictor.predict_rows = lambda rows: (time.sleep(1), original(rows))[1]  # a model that hangs
        response = slow_client.post("/predict", json={"rows": [GOOD_ROW]})
    assert response.status_code == 503
    assert "longer than" in response.json()["detail"]


def test_documented_predict_route_answers_as_the_direct_handler(app, client) -> None:
    """POST /predict skips FastAPI's routing (Instrument hands it to the bare handler); the FastAPI
    route, which documents it, answers the same bodies, statuses and headers when reached."""
    from pipeline.serving.app import Instrument

    layer = app.build_middleware_stack()
    while not isinstance(layer, Instrument):
        layer = layer.app
    # what Instrument wraps, FastAPI's routing, on a server of its own (the lifespan ran in `client`)
    with in_thread(layer.app, lifespan=False, settings=app.state.serving.settings) as router:
        for body, content_type in [(f'{{"rows": [{json.dumps(GOOD_ROW)}]}}', "application/json"),
                                   ('{"rows": [{"species": 3}]}', "application/json"), ("{", "application/json"),
                                   ("{}", "text/plain")]:
            direct = client.post("/predict", content=body, headers={"content-type": content_type})
            routed = router.post("/predict", content=body, headers={"content-type": content_type})
            assert routed.status_code == direct.status_code
            assert routed.headers["content-type"] == direct.headers["content-type"] == "application/json"
            first, second = direct.json(), routed.json()
            if direct.status_code == 200:
                assert direct.headers["x-request-id"] == first.pop("request_id")
                assert routed.headers["x-request-id"] == second.pop("request_id")
            assert first == second


def test_prediction_timeout_bounds_an_onnxruntime_batch(onnx_model_dir, contract) -> None:
    """README: a prediction over MLOPS_PREDICT_TIMEOUT answers 503. Only a few rows (64) run inline,
    untimed; with 2000 (tried for speed) a slow ONNX graph on a 100-row batch held the event loop,
    and /health with it, for as long as it took, and answered 200."""
    import time

    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings

    app = create_app(Settings(model_dir=onnx_model_dir, predict_timeout=0.2), contract)
    with in_thread(app) as slow_client:
        predictor = app.state.serving.predictor
        assert predictor.runtime == "onnxruntime"
        original = predictor.predict_rows
        predictor.predict_rows = lambda rows: (time.sleep(1), original(rows))[1]  # a graph that is slow
        response = slow_client.post("/predict", json={"rows": [GOOD_ROW] * 100})
    assert response.status_code == 503
