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


def from_config(config: Config) -> Contract:
    """The contract for the configured feature columns (target, id and non-features excluded)."""
    columns = config.validate.columns
    fields = [
        FieldSpec(
            name=name,
            type=columns[name].type,
            nullable=columns[name].nullable,
            min=columns[name].min,
            max=columns[name].max,
            allowed=list(columns[name].allowed or ()) or None,
        )
        for name in config.feature_columns
    ]
    return Contract(
        project=config.project,
        task=config.task,
        target=config.data.target,
        positive_class=config.positive_class,
        fields=fields,
        target_min=columns[config.data.target].min,
        target_max=columns[config.data.target].max,
    )
