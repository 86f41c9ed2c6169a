"""Pydantic request/response models built from the contract.

Why strict types: a number sent as a string, a bool for a float or an unknown field must be a
422 naming the field, never a silent coercion the model was not trained on. NaN, Infinity and
numbers beyond the contract's range are rejected the same way.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model

from pipeline.serving.contract import Contract, FieldSpec

# The data in one request may not exceed this many rows (413 beyond); overridable by settings.
DEFAULT_MAX_ROWS = 2000


def _whole_float(value: Any) -> Any:
    """A float with no fraction becomes an int; anything else is left for the strict int check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _field_type(spec: FieldSpec) -> Any:
    bounds: dict[str, Any] = {}
    if spec.min is not None:
        bounds["ge"] = spec.min
    if spec.max is not None:
        bounds["le"] = spec.max
    if spec.type == "float":
        # strict floats still accept JSON integers, as the training data did
        base: Any = Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]
    elif spec.type == "int":
        # 59.0 is the int 59, as in the training file (pandas writes an int column with gaps so)
        base = Annotated[StrictInt, BeforeValidator(_whole_float), Field(**bounds)]
    elif spec.type == "bool":
        base = StrictBool
    elif spec.type == "category" and spec.allowed:
        base = Literal[tuple(spec.allowed)]
    else:
        base = StrictStr
    return base


def row_model(contract: Contract) -> type[BaseModel]:
    """One input row: required unless nullable, no unknown fields."""
    fields: dict[str, Any] = {}
    for spec in contract.fields:
        kind = _field_type(spec)
        fields[spec.name] = (kind | None, None) if spec.nullable else (kind, ...)
    return create_model("Row", __config__=ConfigDict(extra="forbid"), **fields)


def request_model(contract: Contract, max_rows: int = DEFAULT_MAX_ROWS) -> type[BaseModel]:
    """The /predict body: `{"rows": [row, ...]}`; one row is a list of one."""
    row = row_model(contract)
    # mypy cannot use `row`, a class built at run time, as a type
    rows: Any = Annotated[list[row], Field(min_length=1, max_length=max_rows, description="input rows")]  # type: ignore[valid-type]
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), rows=(rows, ...))


class PredictResponse(BaseModel):
    """Predicted label (classification) or value (regression) per row, in request order."""

    predictions: list[Any]
    classes: list[str] | None = Field(default=None, description="column order of `probabilities`")
    probabilities: list[list[float]] | None = Field(default=None, description="one row of class probabilities per input row")
    model_version: str


class FieldError(BaseModel):
    loc: list[Any] = Field(description="where: ['rows', index, field] for row fields")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: a one-line reason and, for 422, one entry per bad field."""

    detail: str
    errors: list[FieldError] = []


class VersionResponse(BaseModel):
    git_sha: str
    model_version: str
    model_uri: str
    data_hash: str
    image_digest: str


class Status(BaseModel):
    status: str
