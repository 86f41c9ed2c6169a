"""The plug-in a forker edits: features and estimators (spots marked `FORK:`).

The whole interface the pipeline sees: `build_model(spec)` returns an unfitted scikit-learn
Pipeline taking the raw feature columns; `requirements(spec)` and `trusted_types(spec)` say what
its saved model needs (pip packages beyond the base runtime, types skops must trust), read from
the estimator's one declaration in `model/estimator.py`; `register_onnx_converters()` lets skl2onnx
convert the estimators it does not know itself. Imports nothing from `pipeline/`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.spec import ModelSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["ModelSpec", "build_model", "register_onnx_converters", "requirements", "trusted_types"]


def build_model(spec: ModelSpec) -> Pipeline:
    """Features followed by the spec's estimator, unfitted.

    Raises:
        ValueError: unknown `train.estimator`, a task it does not support, or its optional
            package is not installed.
        TypeError: a `train.params` key the estimator does not take.
    """
    from sklearn.pipeline import Pipeline

    from model.estimator import build_estimator
    from model.features import build_features

    return Pipeline([("features", build_features(spec)), ("estimator", build_estimator(spec))])


def requirements(spec: ModelSpec) -> list[str]:
    """Pip packages the saved model needs beyond the base runtime (unpinned names)."""
    from model.estimator import declared

    return list(declared(spec.estimator).requirements)


def trusted_types(spec: ModelSpec) -> list[str] | None:
    """Types skops must trust to load the fitted model; None when the estimator declares none."""
    from model import features
    from model.estimator import declared

    types = declared(spec.estimator).trusted_types
    return None if types is None else [*features.TRUSTED_TYPES, *types]


def register_onnx_converters() -> None:
    """Register with skl2onnx each declared estimator's ONNX converter whose package is installed."""
    from model.estimator import ESTIMATORS

    for record in ESTIMATORS.values():
        if record.onnx_converter is not None:
            try:
                record.onnx_converter()
            except ModuleNotFoundError:  # an optional estimator that is not installed: nothing to convert
                continue
