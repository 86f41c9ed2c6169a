"""The fixed list of bad requests and the status each must get (the documented 4xx).

Shared by the in-process tests (a real server in a thread) and the container test, so the image is held to the
same contract as the code.
"""

from __future__ import annotations

import json
from typing import Any

GOOD_ROW: dict[str, Any] = {
    "species": "Gentoo", "island": "Biscoe", "clutch_completion": "yes", "culmen_length_mm": 50.5,
    "culmen_depth_mm": 16.0, "flipper_length_mm": 228.0, "body_mass_g": 5800.0, "delta_15n": 8.3, "delta_13c": -26.1,
}
JSON = "application/json"


def _body(rows: Any) -> bytes:
    return json.dumps({"rows": rows}).encode()


def _row(**changes: Any) -> dict[str, Any]:
    row = {**GOOD_ROW, **changes}
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()

# (name, body, content type, expected status, field the 422 must name or None)
BAD_REQUESTS: list[tuple[str, bytes, str, int, str | None]] = [
    ("malformed JSON", b'{"rows": [{"species": "Gentoo",', JSON, 400, None),
    ("not JSON at all", b"species=Gentoo", JSON, 400, None),
    ("wrong content type", _body([GOOD_ROW]), "text/plain", 415, None),
    ("form content type", b"rows=1", "application/x-www-form-urlencoded", 415, None),
    ("string for a number", _body([_row(body_mass_g="5800")]), JSON, 422, "body_mass_g"),
    ("bool for a number", _body([_row(culmen_length_mm=True)]), JSON, 422, "culmen_length_mm"),
    ("number for a category", _body([_row(species=3)]), JSON, 422, "species"),
    ("unknown category", _body([_row(island="Atlantis")]), JSON, 422, "island"),
    ("missing field", _body([_row(body_mass_g=_DROP)]), JSON, 422, "body_mass_g"),
    ("null in a non-nullable field", _body([_row(species=None)]), JSON, 422, "species"),
    ("extra field", _body([_row(wingspan_cm=80.0)]), JSON, 422, "wingspan_cm"),
    ("extra top-level key", json.dumps({"rows": [GOOD_ROW], "debug": True}).encode(), JSON, 422, "debug"),
    ("NaN", b'{"rows": [' + json.dumps(GOOD_ROW).replace("50.5", "NaN").encode() + b"]}", JSON, 422, "culmen_length_mm"),
    ("Infinity", b'{"rows": [' + json.dumps(GOOD_ROW).replace("5800.0", "Infinity").encode() + b"]}", JSON, 422, "body_mass_g"),
    ("-Infinity", b'{"rows": [' + json.dumps(GOOD_ROW).replace("-26.1", "-Infinity").encode() + b"]}", JSON, 422, "delta_13c"),
    ("huge number", b'{"rows": [' + json.dumps(GOOD_ROW).replace("5800.0", "1e400").encode() + b"]}", JSON, 422, "body_mass_g"),
    ("huge integer", b'{"rows": [' + json.dumps(GOOD_ROW).replace("5800.0", "9" * 400).encode() + b"]}", JSON, 422,
     "body_mass_g"),
    ("out of range", _body([_row(flipper_length_mm=9999.0)]), JSON, 422, "flipper_length_mm"),
    ("empty batch", _body([]), JSON, 422, "rows"),
    ("rows not a list", json.dumps({"rows": GOOD_ROW}).encode(), JSON, 422, "rows"),
    ("bare row without rows", json.dumps(GOOD_ROW).encode(), JSON, 422, "rows"),
    ("JSON array body", b"[]", JSON, 422, None),
    ("too many rows", _body([GOOD_ROW] * 2001), JSON, 413, None),
    ("10 MB body", b'{"rows": [' + b" " * (10 * 1024 * 1024) + b"]}", JSON, 413, None),
]
