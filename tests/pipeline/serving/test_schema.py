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
