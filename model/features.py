"""Feature engineering, derived from the data contract in mlops.yaml.

Numeric columns are imputed (median) and scaled; categorical ones imputed (most frequent) and
one-hot encoded, ignoring categories unseen in training so serving never crashes on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

if TYPE_CHECKING:
    from pipeline.config import Config

NUMERIC_TYPES = {"int", "float"}


def split_feature_types(config: "Config") -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature names, in contract order."""
    columns = config.validate.columns
    numeric = [c for c in config.feature_columns if columns[c].type in NUMERIC_TYPES]
    categorical = [c for c in config.feature_columns if columns[c].type not in NUMERIC_TYPES]
    return numeric, categorical


def build_features(config: "Config") -> ColumnTransformer:
    """The preprocessing step. FORK: add derived features or change encoders here."""
    numeric, categorical = split_feature_types(config)
    numeric_steps = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
