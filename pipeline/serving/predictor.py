"""Load the trained model from an MLflow model directory without MLflow, and predict.

Why without MLflow: the full package adds hundreds of MB and seconds of start-up to the image.
The directory's `MLmodel` file names the serialized file, its format and, for skops, the types
the trainer declared trusted; that is all loading needs.

Start-up without scikit-learn: importing scikit-learn, scipy and skops takes seconds. When the
model directory holds a verified fast path compiled from this very model file (`save_compiled`,
run by the image build and at the first scikit-learn load), `load_compiled` reads only that (NumPy)
and scikit-learn loads later in a background thread, for large batches.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from pipeline.serving import fastpath
from pipeline.serving.contract import Contract

if TYPE_CHECKING:
    import pandas as pd

# Up to this many rows a request may take the NumPy fast path (beyond, scikit-learn is as fast).
FAST_PATH_MAX_ROWS = 64


@dataclass
class Prediction:
    predictions: list[Any]
    classes: list[str] | None
    probabilities: np.ndarray | None  # rows x classes
    scores: np.ndarray | None  # probability of the positive class, for monitoring


class Predictor:
    """A fitted scikit-learn estimator plus the contract that shapes its input frame.

    `estimator` is None while only the compiled fast path is loaded (then `classes` comes from it)."""

    def __init__(self, estimator: Any, contract: Contract, info: dict[str, Any], classes: list[str] | None = None) -> None:
        self.estimator = estimator
        self.contract = contract
        self.info = info
        self.columns = contract.feature_names
        self._string_columns = [f.name for f in contract.fields if f.type in ("string", "category")]
        classes = classes if estimator is None else getattr(estimator, "classes_", None)
        self.classes = [str(c) for c in classes] if classes is not None and contract.task == "classification" else None
        self._positive = (self.classes.index(contract.positive_class)
                          if self.classes and contract.positive_class in self.classes else None)
        self.fast: fastpath.FastPath | None = None  # once verified
        if estimator is not None:
            _single_thread(estimator)

    def enable_fast_path(self, example_rows: list[dict[str, Any]]) -> bool:
        """Use the NumPy fast path for small requests if it reproduces scikit-learn exactly."""
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
        values = np.ascontiguousarray(values)  # LightGBM's predict_proba is column-major; orjson needs C order
        if self.classes is None:
            return Prediction([float(v) for v in values], None, None, None)
        labels = [self.classes[i] for i in values.argmax(axis=1)]
        scores = values[:, self._positive] if self._positive is not None else values.max(axis=1)
        return Prediction(labels, self.classes, values, scores)

    def load_estimator_in_background(self, model_dir: str | Path) -> threading.Thread:
        """Load scikit-learn and the estimator in a thread; large batches use its trees once done
        (until then every request takes the NumPy walk, which is verified too)."""
        def run() -> None:
            try:
                estimator, _ = load_estimator(model_dir)
                _single_thread(estimator)
                if self.fast is not None:
                    self.fast.attach(estimator)
                self.estimator = estimator
                print("scikit-learn loaded in the background: large batches use its trees", file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"background scikit-learn load failed, NumPy path only: {exc!r}", file=sys.stderr, flush=True)

        thread = threading.Thread(target=run, name="load-scikit-learn", daemon=True)
        thread.start()
        return thread

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Rows (already validated) as the DataFrame training saw: missing values as NaN."""
        import pandas as pd

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
            estimator = pickle.load(handle)
    return estimator, info


def load(model_dir: str | Path, contract: Contract) -> Predictor:
    estimator, info = load_estimator(model_dir)
    return Predictor(estimator, contract, info)


def model_hash(model_dir: Path, info: dict[str, Any]) -> str:
    """SHA-256 of the serialized model file: what a compiled fast path was made from."""
    digest = hashlib.sha256()
    with open(model_dir / info["flavors"]["sklearn"]["pickled_model"], "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_compiled(model_dir: str | Path, contract: Contract) -> Predictor | None:
    """The fast path saved next to the model, NumPy only, if it was compiled from this very model
    file (same SHA-256). None when missing, stale or unreadable: use `load` (scikit-learn)."""
    model_dir = Path(model_dir)
    try:
        info = read_mlmodel(model_dir)
        fast, doc = fastpath.load(model_dir)
        if doc.get("model_sha256") != model_hash(model_dir, info):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    loaded = Predictor(None, contract, info, classes=doc.get("classes"))
    loaded.fast = fast
    return loaded


def save_compiled(loaded: Predictor, model_dir: str | Path, example_rows: list[dict[str, Any]]) -> bool:
    """Save `loaded`'s verified fast path next to the model for `load_compiled`. The written copy
    is read back and must reproduce scikit-learn on the verification rows (NumPy walk and
    scikit-learn's trees) before it replaces any artifact. False if not verified or not writable."""
    if loaded.fast is None or loaded.estimator is None:
        return False
    model_dir = Path(model_dir)
    suffix = f".tmp{os.getpid()}.{threading.get_ident()}"
    written = [model_dir / (name + suffix) for name in (fastpath.ARTIFACT_NPZ, fastpath.ARTIFACT_JSON)]
    try:
        meta = {"model_sha256": model_hash(model_dir, loaded.info), "classes": loaded.classes}
        fastpath.save(loaded.fast, model_dir, meta, suffix)
        copy, _ = fastpath.load(model_dir, suffix)
        rows = fastpath.verification_rows(loaded.contract, example_rows)
        if not fastpath.agrees(copy, loaded._sklearn_values, rows):
            return False
        copy.attach(loaded.estimator)
        if not fastpath.agrees(copy, loaded._sklearn_values, rows):
            return False
        for path in written:  # json last: it names the model hash, so it commits the pair
            os.replace(path, model_dir / path.name.removesuffix(suffix))
        return True
    except (OSError, ValueError, TypeError) as exc:  # read-only model directory, or categories JSON cannot hold
        print(f"fast path not saved next to the model: {exc}", file=sys.stderr, flush=True)
        return False
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def compile_fast_path(model_dir: str | Path, contract: Contract) -> bool:
    """Load with scikit-learn, verify the fast path and save it next to the model (`mlops build`)."""
    loaded = load(model_dir, contract)
    rows = warm_up_rows(model_dir, contract)
    return loaded.enable_fast_path(rows) and save_compiled(loaded, model_dir, rows)


def warm_up_rows(model_dir: str | Path, contract: Contract) -> list[dict[str, Any]]:
    """Rows to warm the model with: the saved input example when present, else a synthetic row."""
    import json

    example = Path(model_dir) / "input_example.json"
    if example.is_file():
        raw = json.loads(example.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and "columns" in raw and "data" in raw:
            rows = [dict(zip(raw["columns"], values, strict=False)) for values in raw["data"]]
            return [{name: row.get(name) for name in contract.feature_names} for row in rows]
    return [synthetic_row(contract)]


def warm_up_problem(predictor: Predictor, rows: list[dict[str, Any]], contract: Contract) -> str | None:
    """Why the model cannot answer its warm-up rows, naming the column when one is at fault; None
    when it can. Checked before the server starts, so a bad model ends in one line and exit 1."""
    for spec in contract.fields:
        for row in rows:
            value = row.get(spec.name)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if value is not None and spec.type in ("int", "float") and not numeric:
                return (f"column {spec.name!r}: the warm-up value {_short(repr(value))} is {type(value).__name__}, "
                        f"the contract declares {spec.type} (was the model trained on this column as text?)")
    try:
        predictor.predict_rows(rows)
    except Exception as exc:
        expected = getattr(predictor.estimator, "feature_names_in_", None)
        missing = sorted(set(map(str, expected)) - set(contract.feature_names)) if expected is not None else []
        if missing:
            return f"the model expects columns the contract does not declare: {_short(', '.join(missing))}"
        return f"the model rejected its warm-up rows: {type(exc).__name__}: {_short(str(exc))}"
    return None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


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
