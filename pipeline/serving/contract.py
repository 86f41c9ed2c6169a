"""The request contract: what /predict accepts, as plain data (one source with training).

Why a separate JSON form: the serving image carries no data, no config and no training code, so
the delivery side (`pipeline/delivery/contract.py`) derives the contract from mlops.yaml's data
contract: `mlops build` writes it as `contract.json` for the image, `mlops serve` hands it over
directly. Either way field types, ranges, allowed categories and nullability are the ones
training validated against. This module knows nothing of the config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    """One input column as the API accepts it."""

    name: str
    type: str  # int | float | string | category | bool
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None


@dataclass(frozen=True)
class Contract:
    """What /predict accepts and what it answers."""

    project: str
    task: str  # classification | regression
    target: str
    positive_class: str | None
    fields: list[FieldSpec] = field(default_factory=list)
    target_min: float | None = None  # the target's declared range (regression: /metrics buckets)
    target_max: float | None = None
    # Accepted in a row but never model inputs: the row key (echoed back and logged, labels join
    # by it) and the contract's `feature: false` columns (accepted and ignored).
    id_field: FieldSpec | None = None
    extra_fields: list[FieldSpec] = field(default_factory=list)
    label_field: FieldSpec | None = None  # the target as /feedback accepts it

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Contract:
        fields = [FieldSpec(**f) for f in raw.pop("fields")]
        extra = [FieldSpec(**f) for f in raw.pop("extra_fields", [])]
        id_field, label_field = (FieldSpec(**spec) if (spec := raw.pop(key, None)) else None
                                 for key in ("id_field", "label_field"))
        return cls(fields=fields, extra_fields=extra, id_field=id_field, label_field=label_field, **raw)


def load(path: str | Path) -> Contract:
    """Read a contract.json written by `write`."""
    return Contract.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def write(contract: Contract, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(contract.to_json() + "\n", encoding="utf-8")
    return path
