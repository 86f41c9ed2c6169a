"""The request schema keeps the contract's types: an int field takes 59 and 59.0 (how pandas
writes an int column with gaps, and how the training file held it), never 59.5 or "59"."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.serving.contract import Contract, FieldSpec
from pipeline.serving.schema import request_model

MODEL = request_model(Contract("p", "regression", "y", None, [FieldSpec("age", "int", min=0, max=120)]))


def test_whole_floats_are_ints() -> None:
    parsed = MODEL.model_validate_json('{"rows": [{"age": 59.0}, {"age": 3}]}')
    assert [row.age for row in parsed.rows] == [59, 3]  # type: ignore[attr-defined]
    assert all(type(row.age) is int for row in parsed.rows)  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["59.5", '"59"', "true", "130.0", "NaN"])
def test_other_values_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        MODEL.model_validate_json(f'{{"rows": [{{"age": {value}}}]}}')


def test_an_int_field_with_a_fractional_bound_takes_the_whole_numbers_within_it() -> None:
    """mlops.yaml allows `min: 0.5` on an int column; pydantic refuses to build such a field, so the
    server failed to start with a traceback. An int >= 0.5 is an int >= 1."""
    model = request_model(Contract("p", "regression", "y", None, [FieldSpec("n", "int", min=0.5, max=9.9)]))
    assert [row.n for row in model.model_validate_json('{"rows": [{"n": 1}, {"n": 9}]}').rows] == [1, 9]  # type: ignore[attr-defined]
    for refused in ("0", "10"):
        with pytest.raises(ValidationError):
            model.model_validate_json(f'{{"rows": [{{"n": {refused}}}]}}')
