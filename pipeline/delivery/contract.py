"""The serving contract from mlops.yaml: the one place that turns the pipeline's Config into the
runtime's Contract.

Why here and not in pipeline/serving: the serving image carries no config and no training code,
so the translation happens on the delivery side (`mlops build` writes it as contract.json,
`mlops serve` passes it in) and the runtime only reads plain data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.serving.contract import Contract, FieldSpec

if TYPE_CHECKING:
    from pipeline.config import Config


def _spec(config: Config, name: str, nullable: bool | None = None) -> FieldSpec:
    column = config.validate.columns[name]
    return FieldSpec(name=name, type=column.type, nullable=column.nullable if nullable is None else nullable,
                     min=column.min, max=column.max, allowed=list(column.allowed or ()) or None)


def from_config(config: Config) -> Contract:
    """The contract: the feature columns as model inputs; the id column and the non-feature
    columns as optional extras a row may carry; the target as /feedback accepts it."""
    columns = config.validate.columns
    fields = [_spec(config, name) for name in config.feature_columns]
    id_column = config.data.id_column
    features = set(config.feature_columns)
    extra = [_spec(config, name, nullable=True) for name in columns
             if name not in features and name not in (id_column, config.data.target)]
    return Contract(
        project=config.project,
        task=config.task,
        target=config.data.target,
        positive_class=config.positive_class,
        fields=fields,
        target_min=columns[config.data.target].min,
        target_max=columns[config.data.target].max,
        id_field=_spec(config, id_column, nullable=True) if id_column else None,
        extra_fields=extra,
        label_field=_spec(config, config.data.target, nullable=False),
    )
