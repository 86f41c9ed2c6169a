"""The request contract, derived from mlops.yaml's data contract (one source with training).

Why a separate JSON form: the serving image carries no data and no pipeline code, so `mlops
build` writes `contract.json` from the config and the image reads that. Locally, `mlops serve`
derives it from the config directly. Either way field types, ranges, allowed categories and
nullability are the ones training validated against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import Config


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

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Contract":
        fields = [FieldSpec(**f) for f in raw.pop("fields")]
        return cls(fields=fields, **raw)


def from_config(config: "Config") -> Contract:
    """The contract for the configured feature columns (target, id and non-features excluded)."""
    columns = config.validate.columns
    fields = [
        FieldSpec(
            name=name,
            type=columns[name].type,
            nullable=columns[name].nullable,
            min=columns[name].min,
            max=columns[name].max,
            allowed=list(columns[name].allowed) if columns[name].allowed else None,
        )
        for name in config.feature_columns
    ]
    return Contract(
        project=config.project,
        task=config.task,
        target=config.data.target,
        positive_class=config.positive_class,
        fields=fields,
    )


def load(path: str | Path) -> Contract:
    """Read a contract.json written by `write`."""
    return Contract.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def write(contract: Contract, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(contract.to_json() + "\n", encoding="utf-8")
    return path
