"""Feature engineering, derived from the column kinds in the spec (from mlops.yaml's contract).

Numeric columns are imputed (median) and scaled; categorical ones one-hot encoded, a missing value
being a category of its own (when training saw one), ignoring categories unseen in training so
serving never crashes on them. Every step here converts to ONNX (skl2onnx), which the serving
image runs: a step you add must convert too, or the model is served by scikit-learn (slower, and
a larger image); `mlops build` says which. (skl2onnx cannot convert a SimpleImputer on string
columns whose missing value is NaN, hence no imputer on the categorical columns.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

    from model.spec import ModelSpec

# The non-default types skops must trust to load the fitted feature step. FORK: add the types of
# any transformer you add below (skops names them: `skops.io.get_untrusted_types`).
TRUSTED_TYPES: tuple[str, ...] = ("numpy.dtype",)


def build_features(spec: ModelSpec) -> ColumnTransformer:
    """The preprocessing step. FORK: add derived features or change encoders here."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric_steps = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical_steps = Pipeline([("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    return ColumnTransformer(
        [("numeric", numeric_steps, list(spec.numeric)), ("categorical", categorical_steps, list(spec.categorical))],
        remainder="drop",
        verbose_feature_names_out=False,
    )
