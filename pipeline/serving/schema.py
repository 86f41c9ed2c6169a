"""Pydantic request/response models built from the contract, and the fast /predict decoder.

Why strict types: a number sent as a string, a bool for a float or an unknown field must be a
422 naming the field, never a silent coercion the model was not trained on. NaN, Infinity and
numbers beyond the contract's range are rejected the same way.

Why a second decoder: pydantic validates a 1000-row body in about 1.1 ms, msgspec in 0.4 ms
(rows as dicts included), and the model itself takes about 2 ms. `fast_rows_decoder` builds the
same rules in msgspec for the common case; whatever it refuses (or cannot express) goes to the
pydantic model, which alone writes the 4xx answers. So the fast decoder may refuse more than
pydantic, never accept more, and what it accepts it returns exactly as pydantic would (a
property test holds it to that).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model

from pipeline.serving.contract import Contract, FieldSpec

# The data in one request may not exceed this many rows (413 beyond); overridable by settings.
DEFAULT_MAX_ROWS = 2000


def _whole_float(value: Any) -> Any:
    """A float with no fraction becomes an int; anything else is left for the strict int check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _bounds(spec: FieldSpec) -> dict[str, Any]:
    """`ge`/`le` of a field; for an int field whole numbers (n >= 6.5 is n >= 7: pydantic refuses
    to build an int field with a fractional bound, and mlops.yaml allows one)."""
    low, high = spec.min, spec.max
    # an open end written as infinity (mlops.yaml `max: .inf`) bounds nothing: every finite number passes
    low, high = (None if low == -math.inf else low), (None if high == math.inf else high)
    if spec.type == "int":
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
    return {k: v for k, v in (("ge", low), ("le", high)) if v is not None}


def _field_type(spec: FieldSpec) -> Any:
    bounds = _bounds(spec)
    if spec.type == "float":
        # strict floats still accept JSON integers, as the training data did
        base: Any = Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]
    elif spec.type == "int":
        # 59.0 is the int 59, as in the training file (pandas writes an int column with gaps so).
        # The bounds before the validator: after it, pydantic documents them as `ge`/`le` instead
        # of `minimum`/`maximum`, and OpenAPI clients (and schemathesis) would not see them.
        base = Annotated[StrictInt, Field(**bounds), BeforeValidator(_whole_float)]
    elif spec.type == "bool":
        base = StrictBool
    elif spec.type == "category" and spec.allowed:
        base = Literal[tuple(spec.allowed)]
    else:
        base = StrictStr
    return base


def row_model(contract: Contract) -> type[BaseModel]:
    """One input row: features required unless nullable; the id and non-feature columns optional;
    no unknown fields."""
    fields: dict[str, Any] = {}
    for spec in contract.fields:
        kind = _field_type(spec)
        fields[spec.name] = (kind | None, None) if spec.nullable else (kind, ...)
    for optional in [contract.id_field, *contract.extra_fields]:
        if optional is not None:
            fields[optional.name] = (_field_type(optional) | None, None)
    return create_model("Row", __config__=ConfigDict(extra="forbid"), **fields)


def request_model(contract: Contract, max_rows: int = DEFAULT_MAX_ROWS) -> type[BaseModel]:
    """The /predict body: `{"rows": [row, ...]}`; one row is a list of one."""
    row = row_model(contract)
    # mypy cannot use `row`, a class built at run time, as a type
    rows: Any = Annotated[list[row], Field(min_length=1, max_length=max_rows, description="input rows")]  # type: ignore[valid-type]
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), rows=(rows, ...))


def feedback_model(contract: Contract, max_rows: int = DEFAULT_MAX_ROWS) -> type[BaseModel]:
    """The /feedback body: `{"request_id", "labels"}` (one label per row, in order) or
    `{"ids", "labels"}` (joined by the contract's id column); labels typed as the target."""
    label: Any = _field_type(contract.label_field) if contract.label_field else Any
    ident: Any = _field_type(contract.id_field) if contract.id_field else StrictStr
    id_name = contract.id_field.name if contract.id_field else "none"
    return create_model(
        "FeedbackRequest", __config__=ConfigDict(extra="forbid"),
        request_id=(StrictStr | None, Field(None, description="the `request_id` /predict answered")),
        ids=(list[ident] | None, Field(None, description=f"values of the id column ({id_name})", min_length=1,
                                       max_length=max_rows)),
        labels=(list[label], Field(..., description=f"the true `{contract.target}` per row, in order", min_length=1,
                                   max_length=max_rows)),
    )


def _fast_type(spec: FieldSpec) -> Any:
    """The msgspec type of one field, or None when msgspec cannot say exactly what pydantic does."""
    bounds = _bounds(spec)
    if not all(math.isfinite(bound) for bound in bounds.values()):
        return None  # msgspec.Meta refuses a bound that is not finite (a NaN, or a closed end at infinity)
    if spec.type == "float":
        return Annotated[float, msgspec.Meta(**bounds)] if bounds else float
    if spec.type == "int":  # 59.0 is refused here (pydantic turns it into 59): the slow path takes it
        return Annotated[int, msgspec.Meta(**bounds)] if bounds else int
    if spec.type == "bool":
        return bool
    if spec.type == "category" and spec.allowed:
        return Literal[tuple(spec.allowed)] if all(isinstance(a, str) for a in spec.allowed) else None
    return str


def fast_rows_decoder(contract: Contract, max_rows: int = DEFAULT_MAX_ROWS) -> Callable[[bytes], list[dict[str, Any]]] | None:
    """A function from a /predict body to its rows (dicts, as the pydantic model gives them) that
    raises `msgspec.MsgspecError` on anything it does not accept; None when the contract has a
    field msgspec cannot check as pydantic does."""
    specs = [(spec, spec.nullable) for spec in contract.fields]
    specs += [(spec, True) for spec in [contract.id_field, *contract.extra_fields] if spec is not None]
    fields: list[tuple[str, Any, Any]] = []
    for index, (spec, optional) in enumerate(specs):
        kind = _fast_type(spec)
        if kind is None:
            return None
        attribute = f"f{index}"  # column names need not be identifiers: renamed to the real ones below
        fields.append((attribute, kind | None, None) if optional else (attribute, kind, msgspec.NODEFAULT))
    rename = {f"f{index}": spec.name for index, (spec, _) in enumerate(specs)}
    row = msgspec.defstruct("Row", fields, forbid_unknown_fields=True, rename=rename, kw_only=True)
    rows_type = Annotated[list[row], msgspec.Meta(min_length=1, max_length=max_rows)]  # type: ignore[valid-type]
    body = msgspec.defstruct("PredictRequest", [("rows", rows_type)], forbid_unknown_fields=True)
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(body)

    def decode(raw: bytes) -> list[dict[str, Any]]:  # msgspec refuses 1e999 (out of range), as pydantic does
        rows: list[dict[str, Any]] = msgspec.to_builtins(decoder.decode(raw).rows)
        return rows

    return decode


class PredictResponse(BaseModel):
    """Predicted label (classification) or value (regression) per row, in request order."""

    request_id: str = Field(description="names this request in the prediction log and in /feedback (also X-Request-ID)")
    ids: list[Any] | None = Field(default=None, description="the id column per row, echoed when the rows carried it")
    predictions: list[Any]
    classes: list[str] | None = Field(default=None, description="column order of `probabilities`")
    probabilities: list[list[float]] | None = Field(default=None, description="one row of class probabilities per input row")
    model_version: str


class FeedbackResponse(BaseModel):
    labelled: int = Field(description="rows whose ground truth was recorded")


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
