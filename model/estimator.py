"""The estimators `train.estimator` may name in mlops.yaml, each declared once.

A record says how to build the estimator per task and what its saved model needs: the pip
packages beyond the base runtime (scikit-learn, numpy, scipy, pandas, skops) and the types skops
must trust to load it. The pipeline reads these declarations: the requirements go into the MLflow
model's requirements.txt and from there into the serving image; the trusted types into MLmodel.

FORK: add an estimator with one record in ESTIMATORS (any scikit-learn compatible class;
classifiers must implement predict_proba). If it needs a package the template does not install,
list it in `requirements` and add an optional extra of the same name to pyproject.toml. If
skl2onnx has no converter for it, register one in `onnx_converter` (LightGBM's shows how), or the
image serves it with scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

    from model.spec import ModelSpec

# "module:Class" (imported only when built, so an optional package is needed only when chosen)
# or any callable returning an unfitted estimator.
Factory = str | Callable[..., "BaseEstimator"]


@dataclass(frozen=True)
class Estimator:
    """One estimator: a factory per task and what its saved model needs.

    Args:
        factories: task ("classification"/"regression") -> factory.
        requirements: pip packages the saved model needs beyond the base runtime.
        extra: the pyproject.toml optional extra that installs `requirements`.
        trusted_types: the non-default types skops must trust to load the fitted estimator
            (the feature step's own are in model/features.py). None: found by serialising the
            fitted model once more at save time (about 0.4 s for a 200-tree forest).
        defaults: parameters applied unless `train.params` sets them.
        onnx_converter: registers a skl2onnx converter for the estimator's classes, for one that
            scikit-learn's converter library does not know; called before the build converts the
            model to ONNX for serving (see register_onnx_converters).
        integer_labels: the classifier takes class codes 0..k-1 only: it is wrapped in
            `model.labels.EncodedLabels`, which answers in the original (string) labels.
    """

    factories: Mapping[str, Factory]
    requirements: tuple[str, ...] = ()
    extra: str | None = None
    trusted_types: tuple[str, ...] | None = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    onnx_converter: Callable[[], None] | None = None
    integer_labels: bool = False


def _register_lightgbm_onnx() -> None:
    """LightGBM's converter from onnxmltools, registered with skl2onnx so a pipeline holding
    LGBMClassifier/LGBMRegressor converts as a whole."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes,
                                convert_lightgbm, options={"split": None})


def _register_xgboost_onnx() -> None:
    """XGBoost's converter from onnxmltools, registered with skl2onnx, also for the classifier
    wrapped in EncodedLabels: its graph is XGBoost's trees with the original labels as the class
    labels (codes 0..k-1 are the order of `classes_`), so the graph answers in "female"/"male"."""
    import copy

    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    from model.labels import EncodedLabels

    def convert_encoded_labels(scope: Any, operator: Any, container: Any) -> None:
        wrapper = operator.raw_operator
        inner = copy.copy(wrapper.estimator_)  # shares the booster; only its class list differs
        labels = wrapper.classes_  # `classes_` is a read-only property on XGBClassifier
        inner.__class__ = type("LabelledXGBClassifier", (type(inner),), {"classes_": property(lambda _: labels)})
        operator.raw_operator = inner
        try:
            convert_xgboost(scope, operator, container)
        finally:
            operator.raw_operator = wrapper

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                convert_xgboost, options=classifier_options)
    update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
                                convert_xgboost)
    update_registered_converter(EncodedLabels, "MlopsEncodedLabels", calculate_linear_classifier_output_shapes,
                                convert_encoded_labels, options=classifier_options)


ESTIMATORS: dict[str, Estimator] = {  # FORK: add yours (one record each)
    "random_forest": Estimator(
        factories={
            "classification": "sklearn.ensemble:RandomForestClassifier",
            "regression": "sklearn.ensemble:RandomForestRegressor",
        },
        trusted_types=("sklearn.tree._tree.Tree",),
        defaults={"n_jobs": -1},  # all cores
    ),
    "hist_gradient_boosting": Estimator(
        factories={
            "classification": "sklearn.ensemble:HistGradientBoostingClassifier",
            "regression": "sklearn.ensemble:HistGradientBoostingRegressor",
        },
        trusted_types=(
            "sklearn._loss.link.Interval",
            "sklearn._loss.link.LogitLink",
            "sklearn._loss.link.IdentityLink",
            "sklearn._loss.link.MultinomialLogit",
            "sklearn._loss.loss.HalfBinomialLoss",
            "sklearn._loss.loss.HalfMultinomialLoss",
            "sklearn._loss.loss.HalfSquaredError",
            "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
            "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        ),
    ),
    "linear": Estimator(
        factories={"classification": "sklearn.linear_model:LogisticRegression", "regression": "sklearn.linear_model:Ridge"},
    ),
    "lightgbm": Estimator(
        factories={"classification": "lightgbm:LGBMClassifier", "regression": "lightgbm:LGBMRegressor"},
        requirements=("lightgbm",),
        extra="lightgbm",
        trusted_types=(
            "collections.OrderedDict",
            "lightgbm.basic.Booster",
            "lightgbm.sklearn.LGBMClassifier",
            "lightgbm.sklearn.LGBMRegressor",
        ),
        defaults={"verbose": -1},  # LightGBM logs every split warning to stdout otherwise
        onnx_converter=_register_lightgbm_onnx,
    ),
    "xgboost": Estimator(
        factories={"classification": "xgboost:XGBClassifier", "regression": "xgboost:XGBRegressor"},
        requirements=("xgboost-cpu",),  # the CPU build: the same `xgboost` module, 20 MB instead of 700
        extra="xgboost",
        trusted_types=(
            "model.labels.EncodedLabels",
            "xgboost.core.Booster",
            "xgboost.sklearn.XGBClassifier",
            "xgboost.sklearn.XGBRegressor",
        ),
        defaults={"n_jobs": 2},
        integer_labels=True,  # XGBClassifier refuses string labels ("Expected: [0 1], got ['female' 'male']")
        onnx_converter=_register_xgboost_onnx,
    ),
}

SEEDED = ("random_state",)  # set from the spec's seed unless train.params sets it


def declared(name: str) -> Estimator:
    """The record for `name`; an unknown name fails naming the key and the known names."""
    if name not in ESTIMATORS:
        raise ValueError(f"train.estimator: unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name]


def _resolve(name: str, record: Estimator, factory: Factory) -> Callable[..., BaseEstimator]:
    """Import a "module:Class" factory; a missing optional package says how to install it."""
    if not isinstance(factory, str):
        return factory
    module_name, _, attribute = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        root = module_name.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != root:
            raise
        packages = " ".join(record.requirements) or root
        install = f"pip install -e '.[{record.extra}]'" if record.extra else f"pip install {packages}"
        raise ValueError(f"train.estimator: {name!r} needs the package {packages}: {install}") from None
    cls: Callable[..., BaseEstimator] = getattr(module, attribute)
    return cls


def build_estimator(spec: ModelSpec) -> BaseEstimator:
    """The unfitted estimator the spec names; unknown names or parameters fail naming the key."""
    record = declared(spec.estimator)
    factory = record.factories.get(spec.task)
    if factory is None:
        raise ValueError(f"train.estimator: {spec.estimator!r} does not support task {spec.task!r}")
    cls = _resolve(spec.estimator, record, factory)
    try:
        estimator = cls(**{**record.defaults, **spec.params})
    except TypeError as exc:
        raise TypeError(f"train.params: {exc}") from None
    accepted = estimator.get_params()
    for key in SEEDED:
        if key in accepted and key not in spec.params:
            estimator.set_params(**{key: spec.seed})
    if record.integer_labels and spec.task == "classification":
        from model.labels import EncodedLabels

        return EncodedLabels(estimator)
    return estimator
