"""The prediction log and /feedback: real servers, a real sqlite file, a real PostgreSQL."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pipeline.serving.predlog import FeedbackError, PredictionLog, Record, export_rows
from tests.conftest import need_engine
from tests.pipeline.serving.catalog import GOOD_ROW
from tests.pipeline.serving.live import in_thread, served_model


def _app(model_dir: Path, contract, log: str, **settings):
    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings

    return create_app(Settings(model_dir=model_dir, model_version="7", prediction_log=log, **settings), contract)


def _counter(text: str, name: str, **labels: str) -> float:
    """One sample of the /metrics text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}(?:\{{{re.escape(wanted)}\}})? (\S+)$" if wanted else rf"^{name} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _record(request_id: str, ts: float, rows: int = 1, ident: str | None = None) -> Record:
    return Record(request_id, ts, [{**GOOD_ROW, "sample_id": ident}] * rows, ["male"] * rows, [0.9] * rows, [[0.1, 0.9]] * rows)


def test_full_data_row_is_answered_logged_and_labelled(onnx_model_dir, contract, _prediction_log_here) -> None:
    """A data row minus the target (id and the non-feature `year` included) is accepted; the id is
    echoed, the request id comes back in the body and the header, and the log holds the row, its
    prediction, score and, after /feedback, its label."""
    url = str(_prediction_log_here)
    rows = [{**GOOD_ROW, "sample_id": "P-1", "year": 2009}, {**GOOD_ROW, "body_mass_g": 3000.0, "year": None}]
    with in_thread(_app(onnx_model_dir, contract, url)) as http:
        answer = http.post("/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"]) and answer.headers["x-request-id"] == body["request_id"]
        assert body["ids"] == ["P-1", None]
        labelled = http.post("/feedback", json={"request_id": body["request_id"], "labels": ["male", "female"]})
        assert labelled.status_code == 200 and labelled.json() == {"labelled": 2}, labelled.text
        assert "ids" not in http.post("/predict", json={"rows": [GOOD_ROW]}).json()  # no id sent: none echoed
    logged = [r for r in export_rows(url) if r["request_id"] == body["request_id"]]
    assert [r["row"] for r in logged] == [0, 1]
    first = logged[0]
    assert first["id"] == "P-1" and logged[1]["id"] is None
    assert first["features"]["year"] == 2009 and "sample_id" not in first["features"]
    assert first["features"]["body_mass_g"] == GOOD_ROW["body_mass_g"]
    assert [r["prediction"] for r in logged] == body["predictions"]
    assert first["score"] == pytest.approx(body["probabilities"][0][1], abs=1e-6)
    assert first["model_version"] == "7" and first["model_digest"].startswith("sha256:")
    assert [r["label"] for r in logged] == ["male", "female"]
    assert time.time() - 60 < first["ts"] <= time.time()


def test_unknown_columns_are_still_refused(client) -> None:
    answer = client.post("/predict", json={"rows": [{**GOOD_ROW, "year": 2009, "wingspan_cm": 80.0}]})
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["errors"]] == [["rows", 0, "wingspan_cm"]]


def test_feedback_by_id_joins_every_row_with_that_id(onnx_model_dir, contract, _prediction_log_here) -> None:
    url = str(_prediction_log_here)
    with in_thread(_app(onnx_model_dir, contract, url)) as http:
        first = http.post("/predict", json={"rows": [{**GOOD_ROW, "sample_id": "A"}, {**GOOD_ROW, "sample_id": "B"}]}).json()
        again = http.post("/predict", json={"rows": [{**GOOD_ROW, "sample_id": "A"}]}).json()
        answer = http.post("/feedback", json={"ids": ["A"], "labels": ["female"]})
        assert answer.status_code == 200, answer.text
    labels = {(r["request_id"], r["id"]): r["label"] for r in export_rows(url)}
    assert labels == {(first["request_id"], "A"): "female", (first["request_id"], "B"): None,
                      (again["request_id"], "A"): "female"}


@pytest.mark.parametrize(("name", "feedback", "loc"), [
    ("unknown request id", lambda rid: {"request_id": "0" * 32, "labels": ["male"]}, ["request_id"]),
    ("too few labels", lambda rid: {"request_id": rid, "labels": ["male"]}, ["labels"]),
    ("too many labels", lambda rid: {"request_id": rid, "labels": ["male"] * 3}, ["labels"]),
    ("category not allowed", lambda rid: {"request_id": rid, "labels": ["male", "unknown"]}, ["labels", 1]),
    ("wrong type", lambda rid: {"request_id": rid, "labels": [1, "male"]}, ["labels", 0]),
    ("unknown id", lambda rid: {"ids": ["P-1", "nobody"], "labels": ["male", "male"]}, ["ids", 1]),
    ("ids and labels differ in length", lambda rid: {"ids": ["P-1"], "labels": ["male", "male"]}, ["labels"]),
    ("neither request id nor ids", lambda rid: {"labels": ["male"]}, ["request_id"]),
    ("no labels", lambda rid: {"request_id": rid}, ["labels"]),
    ("unknown key", lambda rid: {"request_id": rid, "labels": ["male", "male"], "debug": 1}, ["debug"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_feedback_is_422_naming_the_field(onnx_model_dir, contract, _prediction_log_here, name, feedback, loc) -> None:
    with in_thread(_app(onnx_model_dir, contract, str(_prediction_log_here))) as http:
        rid = http.post("/predict", json={"rows": [{**GOOD_ROW, "sample_id": "P-1"}, GOOD_ROW]}).json()["request_id"]
        answer = http.post("/feedback", json=feedback(rid))
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["detail"] and loc in [e["loc"] for e in body["errors"]], body


def test_regression_labels_outside_the_target_range_are_422(tmp_path) -> None:
    from pydantic import ValidationError

    from pipeline.serving.contract import Contract, FieldSpec
    from pipeline.serving.schema import feedback_model

    contract = Contract("p", "regression", "y", None, [FieldSpec("x", "float")],
                        label_field=FieldSpec("y", "float", min=0, max=10))

    with pytest.raises(ValidationError) as caught:
        feedback_model(contract).model_validate_json(b'{"request_id": "r", "labels": [3.5, 11]}')
    assert [e["loc"] for e in caught.value.errors()] == [("labels", 1)]


def test_feedback_right_after_predict_finds_the_unwritten_rows(tmp_path) -> None:
    """Feedback for a request still on the writer's queue: `feedback` flushes first, so it is never
    an unknown id, even with no wait for other workers."""
    log = PredictionLog(str(tmp_path / "log.db"))
    log.start()
    try:
        for n in range(200):
            log.record(_record(f"r{n}", time.time(), rows=3))
        assert log.feedback(["male", "female", "male"], request_id="r199", wait=0) == 3
        with pytest.raises(FeedbackError) as caught:
            log.feedback(["male"], request_id="r0", wait=0)
        assert caught.value.loc == ["labels"]
    finally:
        log.close()
    assert [r["label"] for r in export_rows(str(tmp_path / "log.db")) if r["request_id"] == "r199"] == ["male", "female", "male"]


def test_retention_prunes_old_rows_and_labels(tmp_path) -> None:
    url = str(tmp_path / "log.db")
    log = PredictionLog(url, retention_days=None, id_column="sample_id")  # keeps everything
    log.start()
    now = time.time()
    try:
        log.record(_record("old", now - 3 * 86400, ident="A"))
        log.record(_record("new", now, ident="B"))
        assert log.flush()
        log.feedback(["male"], request_id="new")
        log.feedback(["female"], request_id="old")
    finally:
        log.close()
    assert len(list(export_rows(url))) == 2
    assert PredictionLog(url, retention_days=1).prune(now) == 1
    assert [(r["request_id"], r["label"]) for r in export_rows(url)] == [("new", "male")]
    assert [r["request_id"] for r in export_rows(url, since=now - 10, until=now + 10)] == ["new"]
    assert list(export_rows(url, until=now - 10)) == []


def test_writer_prunes_by_itself(tmp_path) -> None:
    url = str(tmp_path / "log.db")
    log = PredictionLog(url, retention_days=1, prune_every=0)
    log.start()
    log.record(_record("old", time.time() - 3 * 86400))
    log.record(_record("new", time.time()))
    log.close()
    assert [r["request_id"] for r in export_rows(url)] == ["new"]


def test_full_queue_drops_and_counts(tmp_path) -> None:
    dropped: list[tuple[str, int]] = []
    log = PredictionLog(str(tmp_path / "log.db"), queue_size=2, on_dropped=lambda reason, n: dropped.append((reason, n)))
    for n in range(5):  # writer not started: the queue fills
        log.record(_record(f"r{n}", time.time(), rows=2))
    assert dropped == [("queue_full", 2)] * 3


def test_unwritable_log_never_fails_a_prediction(onnx_model_dir, contract, tmp_path) -> None:
    """A log path that cannot be created (its parent is a file): /predict answers 200 as ever,
    the lost rows are counted by reason, none is counted as written."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with in_thread(_app(onnx_model_dir, contract, str(blocker / "predictions.db"))) as http:
        for _ in range(5):
            assert http.post("/predict", json={"rows": [GOOD_ROW, GOOD_ROW]}).status_code == 200
        deadline = time.monotonic() + 10
        while _counter(text := http.get("/metrics").text, "serving_prediction_log_dropped_total", reason="write_error") < 10:
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert _counter(text, "serving_prediction_log_rows_total") == 0


def test_log_off_serves_and_feedback_says_so(onnx_model_dir, contract) -> None:
    with in_thread(_app(onnx_model_dir, contract, "off")) as http:
        answer = http.post("/predict", json={"rows": [GOOD_ROW]})
        assert answer.status_code == 200 and answer.json()["request_id"]
        refused = http.post("/feedback", json={"request_id": answer.json()["request_id"], "labels": ["male"]})
        assert refused.status_code == 503 and "off" in refused.json()["detail"]


def test_graceful_shutdown_writes_what_is_queued(onnx_model_dir, contract, _prediction_log_here) -> None:
    url = str(_prediction_log_here)
    with in_thread(_app(onnx_model_dir, contract, url)) as http:
        ids = {http.post("/predict", json={"rows": [GOOD_ROW] * 20}).json()["request_id"] for _ in range(30)}
        assert _counter(http.get("/metrics").text, "serving_prediction_log_dropped_total", reason="queue_full") == 0
    logged = list(export_rows(url))
    assert {r["request_id"] for r in logged} == ids and len(logged) == 600


def test_two_workers_share_one_sqlite_log(onnx_model_dir, tmp_path) -> None:
    """`python -m pipeline.serving` with 2 worker processes (one writer thread each) logging into
    one WAL sqlite file; feedback is sent on fresh connections, so it often reaches the worker that
    did not answer the prediction; SIGTERM drains both writers."""
    import httpx

    url = str(tmp_path / "shared.db")
    server = served_model(onnx_model_dir, tmp_path / "workers.log", workers=2, MLOPS_PREDICTION_LOG=url)
    try:
        answers = []
        for n in range(40):
            with httpx.Client(base_url=server.url, timeout=30) as http:  # a new connection: either worker
                answers.append(http.post("/predict", json={"rows": [{**GOOD_ROW, "sample_id": f"S{n}"}] * 3}).json())
        for answer in answers:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                reply = http.post("/feedback", json={"request_id": answer["request_id"], "labels": ["male", "female", "male"]})
                assert reply.status_code == 200, reply.text
        with httpx.Client(base_url=server.url, timeout=30) as http:
            metrics = http.get("/metrics").text
    finally:
        assert server.stop() == 0, server.text()
    logged = list(export_rows(url))
    assert len(logged) == 120 and {r["request_id"] for r in logged} == {a["request_id"] for a in answers}
    assert [r["label"] for r in logged] == ["male", "female", "male"] * 40
    assert _counter(metrics, "serving_prediction_log_dropped_total", reason="write_error") == 0


@pytest.fixture()
def postgres():
    from tests.engines import EngineUnavailable, start_postgres

    try:
        url, stop = start_postgres()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        return
    yield url, stop
    stop()


@pytest.mark.engine
def test_postgresql_log_and_a_dead_database(onnx_model_dir, contract, postgres) -> None:
    """A real PostgreSQL (Debian's, a throwaway cluster, a database unique to this run): rows and
    labels go there and come back through export_rows; once it is stopped, /predict still answers
    200 at once and the lost rows are counted."""
    url, stop = postgres
    with in_thread(_app(onnx_model_dir, contract, url)) as http:
        body = http.post("/predict", json={"rows": [{**GOOD_ROW, "sample_id": "PG-1"}, GOOD_ROW]}).json()
        assert http.post("/feedback", json={"request_id": body["request_id"], "labels": ["male", "male"]}).status_code == 200
        assert http.post("/feedback", json={"ids": ["PG-1"], "labels": ["female"]}).status_code == 200
        logged = list(export_rows(url))
        assert [(r["id"], r["label"]) for r in logged] == [("PG-1", "male"), (None, "male")]
        stop()
        started = time.monotonic()
        for _ in range(20):
            assert http.post("/predict", json={"rows": [GOOD_ROW]}).status_code == 200
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 30
        while _counter(text := http.get("/metrics").text, "serving_prediction_log_dropped_total", reason="write_error") < 1:
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert _counter(text, "serving_prediction_log_rows_total") == 2


def test_contract_carries_id_non_feature_and_label_columns(contract, tmp_path) -> None:
    """From mlops.yaml: `sample_id` is the id, `year` a non-feature column, `sex` the label; all
    survive contract.json (what the image reads)."""
    from pipeline.serving.contract import load, write

    assert contract.id_field.name == "sample_id" and "sample_id" not in contract.feature_names
    assert [f.name for f in contract.extra_fields] == ["year"] and "year" not in contract.feature_names
    assert contract.label_field.name == "sex" and contract.label_field.allowed == ["female", "male"]
    assert load(write(contract, tmp_path / "contract.json")) == contract


def test_int_column_bounds_are_documented_and_enforced(contract) -> None:
    """`year` (int, 2007-2035) documents minimum/maximum in the OpenAPI schema (pydantic wrote
    `ge`/`le`, which no client reads, when the bounds followed the whole-float validator)."""
    from pydantic import ValidationError

    from pipeline.serving.schema import row_model

    model = row_model(contract)
    assert model.model_json_schema()["properties"]["year"]["anyOf"][0] == {"type": "integer", "minimum": 2007, "maximum": 2035}
    row = {**GOOD_ROW}
    assert model.model_validate({**row, "year": 2009.0}).year == 2009
    with pytest.raises(ValidationError):
        model.model_validate({**row, "year": 0})


def test_the_monitor_reads_what_the_server_logged(onnx_model_dir, contract, config, _prediction_log_here) -> None:
    """The monitor's adapter (pipeline/monitor/source.py) on a log the real app wrote: features,
    the id, the label from /feedback, prediction and score land in its frame."""
    from pipeline.monitor.source import PREDICTION, SCORE, TS, from_log

    url = str(_prediction_log_here)
    with in_thread(_app(onnx_model_dir, contract, url)) as http:
        body = http.post("/predict", json={"rows": [{**GOOD_ROW, "sample_id": "M-1", "year": 2010}, GOOD_ROW]}).json()
        assert http.post("/feedback", json={"ids": ["M-1"], "labels": ["female"]}).status_code == 200
    import pandas as pd

    frame = from_log(config, f"sqlite:///{url}", time.time() - 60, time.time() + 1)

    def column(name: str) -> list:
        return [None if pd.isna(v) else v for v in frame[name]]

    assert column("sample_id") == ["M-1", None] and column("year") == [2010, None]
    assert column("sex") == ["female", None] and column(PREDICTION) == body["predictions"]
    assert frame[SCORE].notna().all() and frame[TS].notna().all()
    assert list(frame["body_mass_g"]) == [GOOD_ROW["body_mass_g"]] * 2


def test_export_from_a_missing_file_is_an_error_and_creates_nothing(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no prediction log"):
        list(export_rows(str(tmp_path / "nowhere.db")))
    assert not (tmp_path / "nowhere.db").exists()


def test_requests_arriving_one_by_one_are_written_in_few_transactions(tmp_path: Path) -> None:
    """At a steady trickle the writer lets records gather (BATCH_LINGER_SECONDS) instead of one
    transaction and one thread wake-up per request, which cost more CPU than the request itself."""
    transactions: list[int] = []
    log = PredictionLog(str(tmp_path / "log.db"), id_column="sample_id", on_written=transactions.append)
    log.start()
    for index in range(50):
        log.record(_record(f"r{index}", time.time()))
        time.sleep(0.001)
    assert log.flush()
    log.close()
    assert sum(transactions) == 50
    assert len(transactions) <= 10, transactions


def test_request_ids_are_time_ordered_uuid7(onnx_model_dir, contract, tmp_path) -> None:
    """The log's primary key starts with the request id: ids that grow with time keep its inserts
    at the index's end (random ids made the writer's cost grow with the log)."""
    import uuid

    with in_thread(_app(onnx_model_dir, contract, str(tmp_path / "log.db"))) as http:
        ids = []
        for _ in range(5):
            ids.append(http.post("/predict", json={"rows": [GOOD_ROW]}).json()["request_id"])
            time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert {uuid.UUID(i).version for i in ids} == {7}


def test_the_queue_bound_holds_while_the_writer_is_stuck(tmp_path) -> None:
    """Records the writer has taken but not yet written still count against the bound: a
    database that stalls (here another connection holds sqlite's write lock) cannot let memory
    grow past it."""
    import sqlite3

    url = str(tmp_path / "log.db")
    dropped: list[tuple[str, int]] = []
    log = PredictionLog(url, queue_size=4, on_dropped=lambda reason, n: dropped.append((reason, n)))
    log.store.connect().close()  # the schema in place
    blocker = sqlite3.connect(url)
    blocker.execute("BEGIN IMMEDIATE")
    log.start()
    for n in range(4):
        log.record(_record(f"a{n}", time.time(), rows=1))
    time.sleep(0.3)  # the writer takes the four and waits for the lock
    for n in range(4):
        log.record(_record(f"b{n}", time.time(), rows=1))
    assert dropped == [("queue_full", 1)] * 4
    blocker.rollback()
    blocker.close()
    assert log.flush(10)
    log.close()
    assert sorted(r["request_id"] for r in export_rows(url)) == ["a0", "a1", "a2", "a3"]


def test_flush_without_a_writer_answers_at_once(tmp_path) -> None:
    log = PredictionLog(str(tmp_path / "log.db"))
    started = time.monotonic()
    assert log.flush(5) is True  # nothing recorded
    log.record(_record("r1", time.time()))
    assert log.flush(5) is False  # recorded, and no writer to write it
    assert time.monotonic() - started < 1


def test_a_value_orjson_refuses_is_logged_and_costs_no_other_row(tmp_path) -> None:
    """An integer beyond 64 bits passes a contract without bounds; orjson refuses it, and one
    such row once made the writer drop its whole transaction."""
    url = str(tmp_path / "log.db")
    dropped: list[tuple[str, int]] = []
    log = PredictionLog(url, on_dropped=lambda reason, n: dropped.append((reason, n)))
    log.start()
    log.record(_record("before", time.time()))
    log.record(Record("huge", time.time(), [{**GOOD_ROW, "year": 2**70}], ["male"], [0.9], [[0.1, 0.9]]))
    log.record(Record("huge-batch", time.time(), [{**GOOD_ROW, "year": 2**70}] * 3, ["male"] * 3, [0.9] * 3, [[0.1, 0.9]] * 3))
    log.record(_record("after", time.time()))
    assert log.flush(10)
    log.close()
    logged = {r["request_id"]: r for r in export_rows(url) if r["row"] == 0}
    assert dropped == [] and set(logged) == {"before", "huge", "huge-batch", "after"}
    assert logged["huge"]["features"]["year"] == logged["huge-batch"]["features"]["year"] == 2**70



def test_numpy_views_orjson_refuses_stay_on_orjson(monkeypatch) -> None:
    """The positive class's scores are a column of the probabilities: not C-contiguous, which
    orjson refuses. They go through `tolist` to orjson, not to json's Python encoder (a third
    of the writer's CPU for a 1000-row batch)."""
    import numpy as np
    import orjson

    from pipeline.serving import predlog

    def slow(value: object) -> str:
        raise AssertionError(f"went to encode: {value!r}")

    monkeypatch.setattr(predlog, "encode", slow)
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5], [0.125, 0.875]])
    scores = probabilities[:, 1]
    assert not scores.flags["C_CONTIGUOUS"]
    assert predlog._fast_json(orjson, scores) == "[0.75,0.5,0.875]"

# --- the layout: one table row per request, and the old one (a row per predicted row) still read ---

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.engine)])
def log_url(request, tmp_path):
    """A log in a sqlite file, or in a real PostgreSQL (engine test)."""
    if request.param == "sqlite":
        yield str(tmp_path / "log.db")
        return
    from tests.engines import EngineUnavailable, start_postgres

    try:
        url, stop = start_postgres()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        return
    yield url
    stop()


def _tables(url: str, query: str) -> list[tuple]:
    from pipeline.serving.predlog import Store

    store = Store(url)
    conn = store.connect()
    try:
        with store.transaction(conn) as cur:
            return cur.execute(query)
    finally:
        conn.close()


def test_one_table_row_per_request_round_trips_rows_ids_and_labels(log_url) -> None:
    """A batch is one `requests` row (its features stored by column), ids go to `request_ids`
    only for the rows that carry one; export gives back every row as it was recorded, in ts
    order, with the label of its request's row, else the one given for its id."""
    import numpy as np

    batch = [{**GOOD_ROW, "sample_id": f"B-{i}", "body_mass_g": 4000.0 + i, "year": 2009} for i in range(5)]
    batch[3]["sample_id"] = None  # a row without an id among rows with one
    uneven = [{**GOOD_ROW, "sample_id": "U-1"}, {"species": "Adelie", "sample_id": "U-2"}, {**GOOD_ROW, "year": 2010}]
    scores = np.array([0.5, 0.25, 0.75, 0.125, 1.0], dtype=np.float32)
    probabilities = np.stack([1 - scores, scores], axis=1)
    now = time.time()
    log = PredictionLog(log_url, model_version="3", model_digest="sha256:ab", id_column="sample_id", retention_days=None)
    log.start()
    try:
        log.record(Record("r2", now, batch, ["male", "female", "male", "male", "female"], scores, probabilities))
        log.record(Record("r1", now - 1, [{**GOOD_ROW, "sample_id": 7}], [41.5], None, None))  # an int id, no scores
        log.record(Record("r3", now + 1, uneven, ["male", "female", "male"], [0.9, 0.2, 0.8], None))
        log.record(Record("r0", now - 2, [GOOD_ROW] * 4, ["male"] * 4, None, None))  # no ids at all
        assert log.flush()
        assert log.feedback(["female"], ids=["B-0"]) == 1  # the request's own label below wins over it
        assert log.feedback(["female", "male", "male", "female", "male"], request_id="r2") == 5
        assert log.feedback(["male", "female"], ids=["U-2", 7]) == 2
    finally:
        log.close()
    assert _tables(log_url, "SELECT COUNT(*) FROM requests") == [(4,)]
    assert sorted(_tables(log_url, "SELECT id_value, request_id, row_index FROM request_ids")) == sorted([
        ('"B-0"', "r2", 0), ('"B-1"', "r2", 1), ('"B-2"', "r2", 2), ('"B-4"', "r2", 4),
        ('"U-1"', "r3", 0), ('"U-2"', "r3", 1)])  # r1, one row: found by its `requests.ids`
    logged = list(export_rows(log_url))
    assert [(r["request_id"], r["row"]) for r in logged] == [
        *[("r0", i) for i in range(4)], ("r1", 0), *[("r2", i) for i in range(5)], *[("r3", i) for i in range(3)]]
    by_key = {(r["request_id"], r["row"]): r for r in logged}
    def without_id(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "sample_id"} for row in rows]

    assert [by_key["r2", i]["features"] for i in range(5)] == without_id(batch)
    assert [by_key["r3", i]["features"] for i in range(3)] == without_id(uneven)
    assert [by_key["r2", i]["id"] for i in range(5)] == ["B-0", "B-1", "B-2", None, "B-4"]
    assert [by_key["r2", i]["score"] for i in range(5)] == [0.5, 0.25, 0.75, 0.125, 1.0]
    assert [by_key["r2", i]["label"] for i in range(5)] == ["female", "male", "male", "female", "male"]
    assert [by_key["r3", i]["label"] for i in range(3)] == [None, "male", None]
    assert [by_key["r3", i]["score"] for i in range(3)] == [0.9, 0.2, 0.8]
    one = by_key["r1", 0]
    assert (one["id"], one["prediction"], one["score"], one["label"]) == (7, 41.5, None, "female")
    assert (one["ts"], one["model_version"], one["model_digest"]) == (now - 1, "3", "sha256:ab")
    assert {r["id"] for r in logged if r["request_id"] == "r0"} == {None}
    assert [r["request_id"] for r in export_rows(log_url, since=now - 1, until=now)] == ["r1"]


def test_a_contract_without_an_id_column_writes_no_id_rows(tmp_path) -> None:
    url = str(tmp_path / "log.db")
    log = PredictionLog(url)  # no id column: a `sample_id` key is a feature like any other
    log.start()
    log.record(_record("r1", time.time(), rows=3, ident="X"))
    log.close()
    assert _tables(url, "SELECT COUNT(*), MAX(ids) FROM requests") == [(1, None)]
    assert _tables(url, "SELECT COUNT(*) FROM request_ids") == [(0,)]
    assert [r["features"]["sample_id"] for r in export_rows(url)] == ["X"] * 3


# The layout main wrote before one row per request, as it wrote it.
LEGACY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS predictions (
        request_id TEXT NOT NULL, row_index INTEGER NOT NULL, ts DOUBLE PRECISION NOT NULL,
        model_version TEXT, model_digest TEXT, id_value TEXT, features TEXT NOT NULL,
        prediction TEXT NOT NULL, score DOUBLE PRECISION, probabilities TEXT,
        PRIMARY KEY (request_id, row_index))""",
    "CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts)",
    "CREATE INDEX IF NOT EXISTS predictions_id ON predictions (id_value)",
    """CREATE TABLE IF NOT EXISTS labels (
        request_id TEXT, row_index INTEGER, id_value TEXT, label TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS labels_request ON labels (request_id, row_index)",
    "CREATE INDEX IF NOT EXISTS labels_id ON labels (id_value)",
)
LEGACY_INSERT = ("INSERT INTO predictions (request_id, row_index, ts, model_version, model_digest, id_value, features,"
                 " prediction, score, probabilities) VALUES (?, ?, ?, 'old', 'sha256:old', ?, ?, ?, ?, NULL)")


def _legacy_log(url: str, rows: list[tuple]) -> None:
    """A log only the old code has written: (request_id, row, ts, id or None, features, prediction, score)."""
    import json
    import sqlite3

    from pipeline.serving.predlog import Store

    store = Store(url)
    if store.postgres:
        import psycopg

        conn = psycopg.connect(url)
    else:
        conn = sqlite3.connect(store.path)
    try:
        with store.transaction(conn) as cur:
            for statement in LEGACY_SCHEMA:
                cur.execute(statement)
            cur.executemany(LEGACY_INSERT, [(rid, row, ts, None if ident is None else json.dumps(ident),
                                             json.dumps(features), json.dumps(prediction), score)
                                            for rid, row, ts, ident, features, prediction, score in rows])
    finally:
        conn.close()


def test_a_log_of_the_old_layout_is_read_labelled_and_pruned_beside_new_rows(log_url) -> None:
    """A log the per-row layout wrote: exported as it is (no writer of today has opened it yet),
    labelled by request id and by id, with the same errors; then new requests join it, export
    interleaves both layouts by time, feedback by id reaches rows of both, prune clears both."""
    now = time.time()
    day = 86400
    _legacy_log(log_url, [
        ("L0", 0, now - 3 * day, "Z", {"x": 0}, "male", 0.5),
        ("L1", 0, now - 10, "A", {"x": 1}, "male", 0.75),
        ("L1", 1, now - 10, None, {"x": 2}, "female", 0.25),
    ])
    assert [(r["request_id"], r["row"], r["id"], r["features"], r["label"]) for r in export_rows(log_url)] == [
        ("L0", 0, "Z", {"x": 0}, None), ("L1", 0, "A", {"x": 1}, None), ("L1", 1, None, {"x": 2}, None)]

    log = PredictionLog(log_url, id_column="sample_id", retention_days=None)  # the writer prunes nothing by itself
    assert log.feedback(["female", "male"], request_id="L1", wait=0) == 2
    for feedback, loc in [({"request_id": "L1", "labels": ["male"]}, ["labels"]),
                          ({"request_id": "nope", "labels": ["male"]}, ["request_id"]),
                          ({"ids": ["A", "nobody"], "labels": ["male", "male"]}, ["ids", 1])]:
        with pytest.raises(FeedbackError) as caught:
            log.feedback(wait=0, **feedback)
        assert caught.value.loc == loc, feedback
    log.start()
    try:
        log.record(_record("N0", now - 2 * day, rows=2, ident="Y"))
        log.record(_record("N1", now - 20, rows=1, ident="A"))
        log.record(_record("N2", now - 5, rows=3, ident=None))
        assert log.flush()
        assert log.feedback(["male"], ids=["A"]) == 1  # the legacy row A keeps its request's label
        assert log.feedback(["female"], ids=["Z"]) == 1  # a legacy id
        assert log.feedback(["male", "female"], request_id="N0") == 2
    finally:
        log.close()
    logged = list(export_rows(log_url))
    assert [(r["request_id"], r["row"], r["id"], r["label"]) for r in logged] == [
        ("L0", 0, "Z", "female"), ("N0", 0, "Y", "male"), ("N0", 1, "Y", "female"), ("N1", 0, "A", "male"),
        ("L1", 0, "A", "female"), ("L1", 1, None, "male"), ("N2", 0, None, None), ("N2", 1, None, None),
        ("N2", 2, None, None)]
    assert logged[0]["model_version"] == "old" and logged[0]["score"] == 0.5

    assert PredictionLog(log_url, retention_days=1).prune(now) == 3  # L0's row and N0's two
    assert [(r["request_id"], r["row"]) for r in export_rows(log_url)] == [
        ("N1", 0), ("L1", 0), ("L1", 1), ("N2", 0), ("N2", 1), ("N2", 2)]
    assert _tables(log_url, "SELECT COUNT(*) FROM request_ids") == [(0,)]  # N0's, pruned; N1 has one row
    for pruned in ("Z", "Y"):
        with pytest.raises(FeedbackError):
            log.feedback(["male"], ids=[pruned], wait=0)
    assert log.feedback(["female"], ids=["A"], wait=0) == 1


def test_labels_by_id_for_more_ids_than_one_query_takes(tmp_path) -> None:
    """Feedback for 1200 ids and their export: the `IN (...)` lists go in slices (sqlite builds
    before 3.32 take 999 parameters)."""
    from pipeline.serving import predlog

    url = str(tmp_path / "log.db")
    log = PredictionLog(url, id_column="sample_id")
    log.start()
    try:
        for n in range(3):
            log.record(Record(f"r{n}", time.time(), [{**GOOD_ROW, "sample_id": f"{n}-{i}"} for i in range(400)],
                              ["male"] * 400, None, None))
        assert log.flush()
        ids = [f"{n}-{i}" for n in range(3) for i in range(400)]
        assert log.feedback(["female"] * len(ids), ids=ids) == len(ids) > predlog.IN_KEYS * 2
    finally:
        log.close()
    assert [r["label"] for r in export_rows(url)] == ["female"] * 1200


def test_the_queue_bound_counts_rows_so_a_stalled_log_of_big_batches_stays_small(tmp_path) -> None:
    """10,000 queued requests of 2000 rows each held about 12 GB (1.2 MB of row dicts per request
    with the bundled contract) per worker while the database stalled: the queue is bounded in
    rows too, and a batch that would pass the bound is dropped whole and counted."""
    from pipeline.serving import predlog

    assert predlog.QUEUE_ROWS * 650 < 200e6  # bytes a queued row holds at least (9 columns)
    dropped: list[tuple[str, int]] = []
    log = PredictionLog(str(tmp_path / "log.db"), queue_rows=10, on_dropped=lambda reason, n: dropped.append((reason, n)))
    for n in range(4):  # writer not started: the queue fills
        log.record(_record(f"r{n}", time.time(), rows=4))
    log.record(_record("one", time.time(), rows=1))
    assert dropped == [("queue_full", 4)] * 2
    log.start()
    assert log.flush(10)
    log.record(_record("big", time.time(), rows=12))  # over the bound (MLOPS_MAX_ROWS raised past it): alone, it gets in
    log.close()
    assert dropped == [("queue_full", 4)] * 2
    assert sorted({r["request_id"] for r in export_rows(str(tmp_path / "log.db"))}) == ["big", "one", "r0", "r1"]
