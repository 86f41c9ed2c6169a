"""The FastAPI app: /predict, /feedback, /health, /ready, /metrics, /version and the OpenAPI document.

Why the body is read by hand: the size limit (413), the content type (415) and one strict
JSON parse (msgspec, else pydantic-core: no Python json round trip) come before any work, and
malformed JSON (400) is told apart from a bad field (422 with one entry per field).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.serving import predictor as predictor_mod
from pipeline.serving.contract import Contract
from pipeline.serving.metrics import FLUSH_SECONDS, Metrics, method_label
from pipeline.serving.predlog import OFF, FeedbackError, PredictionLog, Record, new_request_id
from pipeline.serving.schema import (
    ErrorResponse,
    FeedbackResponse,
    PredictResponse,
    Status,
    VersionResponse,
    fast_rows_decoder,
    feedback_model,
    request_model,
)
from pipeline.serving.settings import Settings


@dataclass
class State:
    """What the routes share; `ready` flips on after warm-up and off when draining."""

    settings: Settings
    contract: Contract
    request_model: type[BaseModel]
    metrics: Metrics
    predictor: predictor_mod.Predictor | None = None
    fast_rows: Callable[[bytes], list[dict[str, Any]]] | None = None  # schema.fast_rows_decoder
    log: PredictionLog | None = None  # None: MLOPS_PREDICTION_LOG=off (or not started yet)
    # One prediction thread per worker process: with anyio's default pool (up to 40 threads) they
    # and the event loop fought over the GIL, 4.1 against 3.4 ms of CPU per 1000-row batch with
    # one thread, which is as cheap as running batches on the event loop and leaves it free.
    predict_thread: anyio.CapacityLimiter | None = None
    ready: bool = False
    draining: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


CLIENT_CLOSED = 499  # nginx's "client closed request": counted as a 4xx, never sent


class ApiError(Exception):
    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []


def _body(payload: Any) -> bytes:
    """Every answer's JSON (the bare /predict handler's and the routes' alike)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def _error_payload(detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"detail": detail, "errors": errors or []}


def _json(status: int, payload: Any) -> Response:
    return Response(_body(payload), status_code=status, media_type="application/json")


def _error(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> Response:
    return _json(status, _error_payload(detail, errors))


class Instrument:
    """ASGI middleware: request count and latency by route and status; `Connection: close` while
    draining. `POST /predict` goes straight to `predict` (the same handler the documented FastAPI
    route calls): FastAPI's routing, dependency solving and Request/Response objects cost more
    than the model does for one row."""

    def __init__(self, app: ASGIApp, state: State, predict: ASGIApp) -> None:
        self.app, self.state, self.predict = app, state, predict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.state.draining:
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        direct = scope["path"] == PREDICT and scope["method"] == "POST"
        try:
            await (self.predict if direct else self.app)(scope, receive, send_wrapper)
        finally:
            path = PREDICT if direct else getattr(scope.get("route"), "path", "unmatched")
            method = method_label(scope.get("method", ""))
            self.state.metrics.observe_request(path, method, status, time.perf_counter() - started)


PREDICT = "/predict"
JSON_TYPE = b"application/json"


def _headers(scope: Scope) -> tuple[str, str]:
    """The content type's media type (lower case, no parameters) and the declared content length."""
    media = length = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value
        elif name == b"content-length":
            length = value
    return media.split(b";")[0].strip().lower().decode("latin-1"), length.decode("latin-1")


async def _read_body(receive: Receive, declared: str, limit: int) -> bytes:
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # aborted upload or read timeout: no one to answer
            raise ApiError(CLIENT_CLOSED, "client closed the connection before the body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse(state: State, body: bytes, model: type[BaseModel] | None = None) -> Any:
    """The /predict rows (or, given `model`, that body) validated; an ApiError naming what is wrong.
    The msgspec decoder first; what it refuses, pydantic decides and explains."""
    if model is None and state.fast_rows is not None:
        try:
            return state.fast_rows(body)
        except msgspec.MsgspecError:
            pass
    try:
        parsed = (model or state.request_model).model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(400, "malformed JSON: " + errors[0]["msg"]) from None
        if any(e["type"] == "too_long" and tuple(e["loc"]) == ("rows",) for e in errors):
            raise ApiError(413, f"too many rows: at most {state.settings.max_rows} per request") from None
        fields = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ApiError(422, f"{len(fields)} invalid field(s)", fields) from None
    return parsed if model else [row.__dict__ for row in parsed.rows]  # type: ignore[attr-defined]


def _predict(state: State, rows: list[dict[str, Any]], request_id: str = "") -> dict[str, Any]:
    """Runs in a worker thread: frame, predict, monitoring and the prediction log (not for warm-up
    rows, which have no request id); returns the payload."""
    assert state.predictor is not None
    result = state.predictor.predict_rows(rows)
    payload: dict[str, Any] = {"request_id": request_id}
    if request_id:
        state.metrics.observe_inputs(rows, state.contract)
        state.metrics.observe_predictions(result.predictions, result.scores)
        if state.log is not None:
            state.log.record(Record(request_id, time.time(), rows, result.predictions, result.scores, result.probabilities))
        id_field = state.contract.id_field
        if id_field is not None and any(row.get(id_field.name) is not None for row in rows):
            payload["ids"] = [row.get(id_field.name) for row in rows]
    payload |= {"predictions": result.predictions, "model_version": state.settings.model_version}
    if result.probabilities is not None:
        payload["classes"] = result.classes
        payload["probabilities"] = result.probabilities
    return payload


def _warm_up(state: State) -> None:
    """Load (unless preloaded) and run the first predictions, so /ready means fast answers.

    The ONNX graph the build verified for this model file when there is one (onnxruntime and
    NumPy only: ready in a fraction of a second), else the scikit-learn pipeline."""
    settings, model_dir = state.settings, state.settings.model_dir
    if state.predictor is None:
        state.predictor = predictor_mod.load(model_dir, state.contract, onnx=settings.onnx)
    print(f"model served by {state.predictor.runtime}", file=sys.stderr, flush=True)
    rows = predictor_mod.warm_up_rows(model_dir, state.contract)
    for _ in range(3):
        _predict(state, rows)
    state.metrics.model_info.labels(settings.model_version, settings.git_sha).set(1)
    state.log = _prediction_log(state)
    state.ready = True


async def _flush_metrics(metrics: Metrics) -> None:
    """Writes the per-row figures every FLUSH_SECONDS, so every worker's reach /metrics."""
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        metrics.flush()


def _prediction_log(state: State) -> PredictionLog | None:
    """This process's prediction log writer, started (after the fork: one writer thread per worker)."""
    settings, metrics = state.settings, state.metrics
    if settings.prediction_log.strip().lower() == OFF:
        return None
    assert state.predictor is not None
    try:
        digest = "sha256:" + predictor_mod.model_hash(settings.model_dir, state.predictor.info)
    except (KeyError, OSError):
        digest = "unknown"
    log = PredictionLog(settings.prediction_log, model_version=settings.model_version, model_digest=digest,
                        id_column=state.contract.id_field.name if state.contract.id_field else None,
                        retention_days=settings.prediction_log_retention_days,
                        on_written=metrics.log_written.inc,
                        on_dropped=lambda reason, rows: metrics.log_dropped.labels(reason).inc(rows))
    log.start()
    return log


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed JSON"},
    413: {"model": ErrorResponse, "description": "body over the size limit or too many rows"},
    415: {"model": ErrorResponse, "description": "content type is not application/json"},
    422: {"model": ErrorResponse, "description": "invalid fields, one entry per field"},
    503: {"model": ErrorResponse, "description": "not ready, draining, or the prediction timed out"},
}


def create_app(settings: Settings, contract: Contract, predictor: predictor_mod.Predictor | None = None) -> FastAPI:
    """The app for one model. Pass a preloaded `predictor` to share it across forked workers."""
    state = State(settings, contract, request_model(contract, settings.max_rows),
                  Metrics((contract.target_min, contract.target_max)), predictor,
                  fast_rows_decoder(contract, settings.max_rows))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.predict_thread = anyio.CapacityLimiter(1)  # made in the worker's event loop
        await anyio.to_thread.run_sync(_warm_up, state)
        flusher = asyncio.get_running_loop().create_task(_flush_metrics(state.metrics))
        yield
        flusher.cancel()
        state.metrics.flush()
        state.ready = False
        if state.log is not None:  # graceful shutdown: what is queued gets written
            await anyio.to_thread.run_sync(state.log.close)

    app = FastAPI(
        title=f"{contract.project} model server",
        version=settings.model_version,
        description=f"Predicts `{contract.target}` ({contract.task}) from the columns of the data contract in mlops.yaml.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry checks three global providers on every request (2 us);
        # this server exports Prometheus metrics (/metrics) and configures no OpenTelemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.serving = state

    async def predict_payload(scope: Scope, receive: Receive) -> dict[str, Any]:
        """/predict's answer for one request, or an ApiError."""
        media, declared = _headers(scope)
        if media != "application/json":
            raise ApiError(415, "content type must be application/json")
        body = await _read_body(receive, declared, settings.max_body_bytes)
        if not state.ready:
            raise ApiError(503, "draining" if state.draining else "model not loaded yet")
        rows = _parse(state, body)
        request_id = new_request_id()
        if state.predictor is not None and state.predictor.is_fast(len(rows)):
            # onnxruntime on a few rows: tens of microseconds, bounded; a thread hop would cost more.
            return _predict(state, rows, request_id)
        try:
            with anyio.fail_after(settings.predict_timeout):
                return await anyio.to_thread.run_sync(_predict, state, rows, request_id, abandon_on_cancel=True,
                                                      limiter=state.predict_thread)
        except TimeoutError:
            state.metrics.timeouts.inc()
            raise ApiError(503, f"prediction took longer than {settings.predict_timeout}s") from None

    async def predict_direct(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /predict as a bare ASGI app: the same bodies and headers the FastAPI route sends."""
        try:
            payload = await predict_payload(scope, receive)
        except ApiError as exc:
            status, extra, body = exc.status, [], _body(_error_payload(exc.detail, exc.errors))
        else:
            status, extra, body = 200, [(b"x-request-id", payload["request_id"].encode())], _body(payload)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON_TYPE), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    app.add_middleware(Instrument, state=state, predict=predict_direct)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.detail, exc.errors)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        summary="Predict one row or a batch",
        openapi_extra={"requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        }},
    )
    async def predict(request: Request) -> Response:
        """Documents /predict in the OpenAPI schema; requests are answered by `predict_direct`
        (see Instrument), so this runs only for an app mounted without it."""
        payload = await predict_payload(request.scope, request.receive)
        response = _json(200, payload)
        response.headers["x-request-id"] = payload["request_id"]
        return response

    feedback_body = feedback_model(contract, settings.max_rows)

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses={k: v for k, v in ERROR_RESPONSES.items() if k != 503} | {503: {
            "model": ErrorResponse, "description": "not ready, or the prediction log is off"}},
        summary="Record the ground truth for predicted rows",
        description="`{\"request_id\", \"labels\"}`: one label per row of that /predict request, in order; or "
                    "`{\"ids\", \"labels\"}`: labels for rows by the contract's id column.",
        openapi_extra={"requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
        }},
    )
    async def feedback(request: Request) -> Response:
        media, declared = _headers(request.scope)
        if media != "application/json":
            raise ApiError(415, "content type must be application/json")
        body = await _read_body(request.receive, declared, settings.max_body_bytes)
        if state.log is None:
            raise ApiError(503, "the prediction log is off (MLOPS_PREDICTION_LOG=off)" if state.ready else "model not loaded yet")
        parsed = _parse(state, body, feedback_body)
        labels, request_id, ids = parsed.labels, parsed.request_id, parsed.ids
        if (request_id is None) == (ids is None):
            raise ApiError(422, "1 invalid field(s)", [{"loc": ["request_id"], "msg": "give either request_id or ids",
                                                        "type": "missing" if request_id is None else "extra_forbidden"}])
        if ids is not None and len(ids) != len(labels):
            raise ApiError(422, "1 invalid field(s)", [{"loc": ["labels"], "msg": f"{len(ids)} id(s) but {len(labels)} label(s)",
                                                        "type": "length_mismatch"}])
        try:
            count = await anyio.to_thread.run_sync(lambda: state.log.feedback(labels, request_id, ids))  # type: ignore[union-attr]
        except FeedbackError as exc:
            raise ApiError(422, "1 invalid field(s)", [{"loc": exc.loc, "msg": exc.msg, "type": "unknown"}]) from None
        except Exception as exc:
            raise ApiError(503, f"the prediction log cannot be read: {type(exc).__name__}: {exc}") from None
        return _json(200, {"labelled": count})

    @app.get("/health", response_model=Status, summary="Liveness: the process answers")
    async def health() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/ready", response_model=Status, responses={503: ERROR_RESPONSES[503]},
             summary="Readiness: model loaded and warmed, not draining")
    async def ready() -> Response:
        if state.ready and not state.draining:
            return _json(200, {"status": "ready"})
        return _error(503, "draining" if state.draining else "model not loaded yet")

    @app.get("/version", response_model=VersionResponse, summary="Lineage of what is served")
    async def version() -> Response:
        s = settings
        return _json(200, {"git_sha": s.git_sha, "model_version": s.model_version, "model_uri": s.model_uri,
                           "data_hash": s.data_hash, "image_digest": s.image_digest})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "exposition format"}})
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema = state.request_model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components["PredictRequest"] = schema
            feedback_schema = feedback_body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(feedback_schema.pop("$defs", {}))
            components["FeedbackRequest"] = feedback_schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
