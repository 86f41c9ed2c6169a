"""The fast /predict decoder (msgspec) never accepts what the pydantic model refuses, and returns
what it accepts exactly as pydantic does: same keys, values and types. Bodies are generated as
JSON text, so they hold what a JSON library would not write: duplicate keys, 1e999, NaN, lone
surrogates, integers beyond 64 bits, whole floats for ints."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.serving.contract import Contract, FieldSpec
from pipeline.serving.schema import fast_rows_decoder, request_model

CONTRACT = Contract(
    "p", "classification", "y", "yes",
    [FieldSpec("mass (g)", "float", min=-1.5, max=7000.0), FieldSpec("ratio", "float"),
     FieldSpec("age", "int", min=0.5, max=120.0), FieldSpec("count", "int", nullable=True),
     FieldSpec("flag", "bool", nullable=True), FieldSpec("kind", "category", allowed=["a", "b"]),
     FieldSpec("note", "string", nullable=True)],
    id_field=FieldSpec("row id", "string", nullable=True), extra_fields=[FieldSpec("year", "int", nullable=True)])
NAMES = [f.name for f in CONTRACT.fields] + ["row id", "year", "unknown", "Kind"]
MAX_ROWS = 5
PYDANTIC = request_model(CONTRACT, MAX_ROWS)
FAST = fast_rows_decoder(CONTRACT, MAX_ROWS)
VALID = {"mass (g)": 12.5, "ratio": -3, "age": 40, "count": None, "flag": True, "kind": "a", "note": "x"}

RAW_TOKENS = ["1e999", "-1e999", "NaN", "Infinity", "-0.0", "59.0", "1E2", "0.5", "120", "121", "0", "-1.5",
              "7000.0000001", str(2**64), str(-(2**70)), '"\\ud800"', '"a"', '"b"', '"A"', "true", "false", "null",
              "[]", "{}", '"59"', '""', "1.0e0"]
values = st.integers(0, 9).flatmap(lambda pick: st.sampled_from(RAW_TOKENS) if pick < 7 else st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=4).map(json.dumps),
    st.booleans().map(json.dumps),
))


def _row_text(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


@st.composite
def rows(draw: Any) -> str:
    """One row's JSON text: a valid row with at most two fields changed, added (maybe twice) or removed."""
    pairs = {name: json.dumps(value) for name, value in VALID.items()}
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=2)):
        if draw(st.integers(0, 4)):
            pairs[name] = draw(values)
        else:
            pairs.pop(name, None)
    listed = list(pairs.items())
    if draw(st.integers(0, 9)) == 0:  # a duplicate key, the second one wins in pydantic
        listed.append((draw(st.sampled_from(NAMES)), draw(values)))
    return _row_text(listed)


bodies = st.one_of(
    st.lists(rows(), min_size=1, max_size=2).map(lambda r: '{"rows": [' + ",".join(r) + "]}"),
    st.lists(rows(), min_size=0, max_size=MAX_ROWS + 1).map(lambda r: '{"rows": [' + ",".join(r) + "]}"),
    st.lists(rows(), min_size=1, max_size=2).map(lambda r: '{"rows": [' + ",".join(r) + '], "extra": 1}'),
    st.sampled_from(['{"rows": {}}', '{"rows": null}', "[]", '{"rows": [1]}', '{"rows": [{"a": 1}', ""]),
)


def _typed(rows: list[dict[str, Any]]) -> list[list[tuple[str, type, Any]]]:
    return [[(key, type(value), value) for key, value in row.items()] for row in rows]


def _body(**changes: str) -> str:
    return '{"rows": [' + _row_text([*((k, json.dumps(v)) for k, v in VALID.items()), *changes.items()]) + "]}"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
@example(json.dumps({"rows": [VALID] * (MAX_ROWS + 1)}))  # 413 in pydantic's hands
@example(json.dumps({"rows": []}))
@example(_body(ratio="1e999"))  # infinity: both refuse it
@example(_body(age="59.0"))  # pydantic makes it 59; msgspec refuses (the slow path takes it)
@example(_body(kind='"c"', **{"kind ": '"a"'}))
@example(_body(count=str(2**64)))
@example('{"rows": [' + _row_text([*((k, json.dumps(v)) for k, v in VALID.items()), ("age", '"x"'), ("age", "3")]) + "]}")
def test_fast_decoder_accepts_only_what_pydantic_accepts_and_alike(body: str) -> None:
    assert FAST is not None
    try:
        fast = FAST(body.encode())
    except msgspec.MsgspecError:
        return  # the server asks pydantic, which writes the answer
    try:
        slow = [row.__dict__ for row in PYDANTIC.model_validate_json(body).rows]  # type: ignore[attr-defined]
    except ValidationError as exc:
        pytest.fail(f"fast decoder accepted what pydantic refuses: {body!r}: {exc}")
    assert _typed(fast) == _typed(slow), body


def test_common_rows_take_the_fast_path() -> None:
    """Valid rows, nulls in nullable fields and an int sent for a float: no fallback."""
    assert FAST is not None
    body = json.dumps({"rows": [VALID, VALID | {"count": 3, "flag": None, "row id": "r1", "year": 2020}]})
    assert FAST(body.encode())[1]["row id"] == "r1"


def test_what_msgspec_cannot_express_gets_no_fast_decoder() -> None:
    """A category whose allowed values are not all strings: pydantic alone decides."""
    odd = Contract("p", "regression", "y", None, [FieldSpec("k", "category", allowed=["a", 1])])  # type: ignore[list-item]
    assert fast_rows_decoder(odd) is None


@pytest.mark.parametrize(("kind", "bound"), [
    ("float", {"max": float("inf")}), ("float", {"min": float("-inf")}), ("float", {"min": 0.0, "max": float("inf")}),
    ("int", {"min": 0, "max": float("inf")}), ("int", {"min": float("-inf")}),
    ("float", {"min": float("inf")}), ("float", {"max": float("nan")})])
def test_a_bound_at_infinity_serves_as_pydantic_does(kind: str, bound: dict[str, float]) -> None:
    """mlops.yaml takes `max: .inf` (contract.json carries it as Infinity), which msgspec.Meta
    refuses: the app could not be created. An open end at infinity bounds nothing (the fast path
    stays); what msgspec cannot express (a NaN, a closed end at infinity) is left to pydantic."""
    contract = Contract("p", "regression", "y", None, [FieldSpec("x", kind, **bound)])
    slow = request_model(contract)
    fast = fast_rows_decoder(contract)
    open_ended = all(v in (float("-inf"), float("inf"), 0) for v in bound.values()) and bound.get("min") != float("inf")
    assert (fast is not None) == open_ended
    for value in ("1", "-1", "0", "1e300", "1.5"):
        body = '{"rows": [{"x": ' + value + "}]}"
        try:
            accepted = fast(body.encode()) if fast is not None else None
        except msgspec.MsgspecError:
            accepted = None
        if accepted is not None:
            assert accepted == [row.__dict__ for row in slow.model_validate_json(body).rows]  # type: ignore[attr-defined]
    if open_ended and fast is not None:
        assert fast(b'{"rows": [{"x": 1}]}') == [{"x": 1.0 if kind == "float" else 1}]
