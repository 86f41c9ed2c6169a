"""Load the trained model from an MLflow model directory without MLflow, and predict.

Why without MLflow: the full package adds hundreds of MB and seconds of start-up to the image.
The directory's `MLmodel` file names the serialized file, its format and, for skops, the types
the trainer declared trusted; that is all loading needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from model.serving.contract import Contract

# Up to this many rows a request may take the NumPy fast path (beyond, scikit-learn is as fast).
FAST_PATH_MAX_ROWS = 64


@dataclass
class Prediction:
    predictions: list[Any]
    classes: list[str] | None
    probabilities: np.ndarray | None  # rows x classes
    scores: np.ndarray | None  # probability of the positive class, for monitoring


class Predictor:
    """A fitted scikit-learn estimator plus the contract that shapes its input frame."""

    def __init__(self, estimator: Any, contract: Contract, info: dict[str, Any]) -> None:
        self.estimator = estimator
        self.contract = contract
        self.info = info
        self.columns = contract.feature_names
        self._string_columns = [f.name for f in contract.fields if f.type in ("string", "category")]
        classes = getattr(estimator, "classes_", None)
        self.classes = [str(c) for c in classes] if classes is not None and contract.task == "classification" else None
        self._positive = self.classes.index(contract.positive_class) if self.classes and contract.positive_class in self.classes else None
        self.fast: Any = None  # fastpath.FastPath once verified
        _single_thread(estimator)

    def enable_fast_path(self, example_rows: list[dict[str, Any]]) -> bool:
        """Use the NumPy fast path for small requests if it reproduces scikit-learn exactly."""
        from model.serving import fastpath

        self.fast = fastpath.verified(self.estimator, self.contract, self._sklearn_values, example_rows)
        return self.fast is not None

    def _sklearn_values(self, rows: list[dict[str, Any]]) -> np.ndarray:
        frame = self.frame(rows)
        return self.estimator.predict_proba(frame) if self.classes is not None else self.estimator.predict(frame)

    def predict_rows(self, rows: list[dict[str, Any]]) -> Prediction:
        """Small requests fully on the verified fast path; large ones with compiled features and
        scikit-learn's trees; anything else through the fitted scikit-learn pipeline."""
        if self.fast is not None:
            return self._prediction(self.fast(rows) if len(rows) <= FAST_PATH_MAX_ROWS else self.fast.batch(rows))
        return self._prediction(self._sklearn_values(rows))

    def is_fast(self, rows: int) -> bool:
        """True when a request of `rows` rows takes the bounded NumPy path (safe to run inline)."""
        return self.fast is not None and rows <= FAST_PATH_MAX_ROWS

    def _prediction(self, values: np.ndarray) -> Prediction:
        if self.classes is None:
            return Prediction([float(v) for v in values], None, None, None)
        labels = [self.classes[i] for i in values.argmax(axis=1)]
        scores = values[:, self._positive] if self._positive is not None else values.max(axis=1)
        return Prediction(labels, self.classes, values, scores)

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Rows (already validated) as the DataFrame training saw: missing values as NaN."""
        frame = pd.DataFrame.from_records(rows, columns=self.columns)
        for name in self._string_columns:
            column = frame[name]
            if column.isna().any():
                frame[name] = column.astype(object).where(column.notna(), np.nan)
        return frame

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """scikit-learn on a prepared frame (the reference path)."""
        values = self.estimator.predict_proba(frame) if self.classes is not None else self.estimator.predict(frame)
        return self._prediction(values)


def _single_thread(estimator: Any) -> None:
    """One thread per prediction: a joblib pool per request costs more than it saves (workers scale)."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if steps else estimator
    if "n_jobs" in getattr(final, "get_params", lambda: {})():
        final.set_params(n_jobs=1)


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "MLmodel"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: not an MLflow model directory (no MLmodel file)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_estimator(model_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The estimator saved by mlflow.sklearn (skops, or pickle/cloudpickle) and the MLmodel info."""
    model_dir = Path(model_dir)
    info = read_mlmodel(model_dir)
    flavor = (info.get("flavors") or {}).get("sklearn")
    if not flavor:
        raise ValueError(f"{model_dir}: MLmodel has no sklearn flavor")
    path = model_dir / flavor["pickled_model"]
    fmt = flavor.get("serialization_format", "cloudpickle")
    if fmt == "skops":
        import skops.io as sio

        estimator = sio.load(path, trusted=list(flavor.get("skops_trusted_types") or []))
    else:  # pickle / cloudpickle: only load models you produced yourself
        import pickle

        with open(path, "rb") as handle:
            estimator = pickle.load(handle)  # noqa: S301 - our own artifact, declared in MLmodel
    return estimator, info


def load(model_dir: str | Path, contract: Contract) -> Predictor:
    estimator, info = load_estimator(model_dir)
    return Predictor(estimator, contract, info)


def warm_up_rows(model_dir: str | Path, contract: Contract) -> list[dict[str, Any]]:
    """Rows to warm the model with: the saved input example when present, else a synthetic row."""
    import json

    example = Path(model_dir) / "input_example.json"
    if example.is_file():
        raw = json.loads(example.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and "columns" in raw and "data" in raw:
            rows = [dict(zip(raw["columns"], values)) for values in raw["data"]]
            return [{name: row.get(name) for name in contract.feature_names} for row in rows]
    return [synthetic_row(contract)]


def synthetic_row(contract: Contract) -> dict[str, Any]:
    """A valid row from the contract alone (midpoints, first category)."""
    row: dict[str, Any] = {}
    for f in contract.fields:
        if f.allowed:
            row[f.name] = f.allowed[0]
        elif f.type in ("float", "int"):
            low, high = f.min if f.min is not None else 0.0, f.max if f.max is not None else 1.0
            mid = (low + high) / 2
            row[f.name] = int(mid) if f.type == "int" else float(mid)
        elif f.type == "bool":
            row[f.name] = False
        else:
            row[f.name] = "x"
    return row
