"""Projects on data the template has never seen: scikit-learn's make_regression and
make_classification with an added categorical column, missing values and an id column, written
with a matching mlops.yaml. Tests edit the returned raw config before writing it. The `*_csv`
files have no config: `mlops init` writes it (they add integer-valued floats written as `59.0`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml


def regression_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """y = linear in x0..x3 + a shift per region; `size` has ~10% missing values."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=rows, n_features=4, n_informative=4, noise=8.0, random_state=seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)]).round(4)
    frame["region"] = rng.choice(["north", "south", "east"], size=rows)
    frame["size"] = rng.normal(50, 10, size=rows).round(2)
    frame.loc[rng.random(rows) < 0.1, "size"] = np.nan
    shift = frame["region"].map({"north": 0.0, "south": 40.0, "east": -40.0})
    frame["y"] = (y + shift + 200).round(3)
    frame.insert(0, "row_id", [f"r{i:05d}" for i in range(rows)])
    return frame


def classification_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Binary `label` (no/yes) from f0..f4; `segment` categorical; f4 with ~10% missing."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=5, n_informative=3, n_redundant=1, random_state=seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).round(4)
    frame.loc[rng.random(rows) < 0.1, "f4"] = np.nan
    frame["segment"] = rng.choice(["a", "b", "c"], size=rows)
    frame["label"] = np.where(y == 1, "yes", "no")
    frame.insert(0, "row_id", [f"c{i:05d}" for i in range(rows)])
    return frame


def _contract(frame: pd.DataFrame) -> dict[str, Any]:
    columns: dict[str, Any] = {"row_id": {"type": "string", "unique": True}}
    for name in frame.columns[1:]:
        values = frame[name]
        if not pd.api.types.is_numeric_dtype(values):
            columns[name] = {"type": "category", "allowed": sorted(values.dropna().unique().tolist())}
        else:
            span = float(values.max() - values.min())
            columns[name] = {"type": "float", "min": float(values.min()) - span, "max": float(values.max()) + span}
        if values.isna().any():
            columns[name].update(nullable=True, max_null_rate=0.3)
    return columns


def regression_config() -> dict[str, Any]:
    frame = regression_frame()
    return {
        "project": "generated-regression",
        "task": "regression",
        "seed": 7,
        "data": {"path": "data/train.csv", "reference": "data/reference.csv", "target": "y", "id_column": "row_id"},
        "validate": {"min_rows": 50, "columns": _contract(frame)},
        "train": {"estimator": "hist_gradient_boosting", "params": {"max_iter": 60}},
        "evaluate": {
            "gates": [{"metric": "r2", "threshold": 0.5}, {"metric": "mae", "threshold": 100, "direction": "lower"}],
            "slices": [{"column": "region", "metric": "mae", "max": 100},
                       {"column": "x0", "metric": "mae", "max": 100, "quantiles": 4}],
            "fairness": {"column": "region", "metric": "mae", "max": 60},
            "champion": {"metric": "mae", "direction": "lower", "tolerance": 5},
            "behaviour": {"minimum": [
                {"name": "an average north row", "row": {"x0": 0.0, "x1": 0.0, "x2": 0.0, "x3": 0.0, "region": "north",
                                                          "size": 50.0}, "expect": 200, "tolerance": 60},
            ]},
        },
    }


def classification_config() -> dict[str, Any]:
    frame = classification_frame()
    return {
        "project": "generated-classification",
        "task": "classification",
        "seed": 7,
        "data": {"path": "data/train.csv", "reference": "data/reference.csv", "target": "label", "id_column": "row_id",
                 "positive_class": "yes"},
        "validate": {"min_rows": 50, "columns": _contract(frame)},
        "train": {"estimator": "random_forest", "params": {"n_estimators": 40}},
        "evaluate": {
            "gates": [{"metric": "accuracy", "threshold": 0.6}],
            "slices": [{"column": "segment", "metric": "accuracy", "min": 0.5},
                       {"column": "f0", "metric": "accuracy", "min": 0.5, "bins": [-1.0, 0.0, 1.0]}],
            "fairness": {"column": "segment", "max": 0.5},
            "champion": {"metric": "roc_auc", "tolerance": 0.02},
        },
    }


def write_project(dest: Path, frame: pd.DataFrame, raw: dict[str, Any],
                  mutate: Callable[[dict[str, Any]], None] = lambda raw: None) -> Path:
    """The data and mlops.yaml in `dest`; returns the config path."""
    (dest / "data").mkdir(parents=True, exist_ok=True)
    frame.to_csv(dest / "data" / "train.csv", index=False)
    frame.sample(frac=0.5, random_state=1).to_csv(dest / "data" / "reference.csv", index=False)
    mutate(raw)
    path = dest / "mlops.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def classification_csv(path: Path, rows: int = 600, features: int = 25) -> Path:
    """31 columns: `customer_id`, 25 numeric features, `region`, `plan`, `age` (59.0), `income`
    (10% missing) and the string label `churn` (yes/no)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=features, n_informative=8, n_redundant=4,
                               class_sep=1.2, random_state=7)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(x.round(4), columns=[f"f{i:02d}" for i in range(features)])
    frame.insert(0, "customer_id", [f"C{i:05d}" for i in range(rows)])
    frame["region"] = rng.choice(["north", "south", "east", "west"], rows)
    frame["plan"] = rng.choice(["basic", "plus", "pro"], rows)
    frame["age"] = rng.integers(18, 90, rows).astype(float)  # written as 59.0: an int column
    income = rng.normal(50_000, 12_000, rows).round(2)
    income[rng.random(rows) < 0.1] = np.nan
    frame["income"] = income
    frame["churn"] = np.where(y == 1, "yes", "no")
    frame.to_csv(path, index=False)
    return path


def regression_csv(path: Path, rows: int = 500) -> Path:
    """`house_id`, 8 numeric features, `city` (category), `rooms` (3.0), `lot` (15% missing), `price`."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=rows, n_features=8, n_informative=6, noise=5.0, random_state=3)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(8)])
    frame.insert(0, "house_id", np.arange(1000, 1000 + rows))
    frame["city"] = rng.choice(["lyon", "nantes", "lille"], rows)
    frame["rooms"] = rng.integers(1, 8, rows).astype(float)
    lot = rng.uniform(100, 900, rows).round(1)
    lot[rng.random(rows) < 0.15] = np.nan
    frame["lot"] = lot
    frame["price"] = (y + 300 + 20 * frame["rooms"]).round(2)
    frame.to_csv(path, index=False)
    return path
