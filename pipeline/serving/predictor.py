"""Load the trained model from an MLflow model directory without MLflow, and predict.

Why without MLflow: the full package adds hundreds of MB and seconds of start-up to the image.
The directory's `MLmodel` file names the serialized file, its format and, for skops, the types
the trainer declared trusted; that is all the scikit-learn path needs.

Why ONNX Runtime: the build (`mlops build`, `mlops serve`; pipeline/delivery/onnx.py) converts the
fitted pipeline, features included, to `model.onnx` and keeps it only if it agrees with
scikit-learn; `model.onnx.json` names the SHA-256 of the model file it was made from. When that
matches, the server runs the graph with onnxruntime (tens of microseconds a row, NumPy and
onnxruntime only, so the image needs neither scikit-learn nor SciPy); otherwise, and for a model
that did not convert, it loads the scikit-learn pipeline as trained.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from pipeline.serving.contract import Contract

if TYPE_CHECKING:
    import pandas as pd

ONNX_FILE = "model.onnx"
ONNX_META = "model.onnx.json"  # {"model_sha256", "onnx_sha256", "classes", "tolerance", ...}
# Up to this many rows an onnxruntime request runs on the event loop (well under 1 ms); larger ones,
# and scikit-learn, go to the worker's prediction thread under MLOPS_PREDICT_TIMEOUT (app.py).
INLINE_MAX_ROWS = 64
MISSING_CATEGORY = "nan"  # what skl2onnx names the category NaN (a missing value) became in training


@dataclass
class Prediction:
    predictions: list[Any]
    classes: list[str] | None
    probabilities: np.ndarray | None  # rows x classes
    scores: np.ndarray | None  # probability of the positive class, for monitoring


class Predictor:
    """The model behind /predict: an onnxruntime graph (`runtime == "onnxruntime"`) or the fitted
    scikit-learn pipeline (`"scikit-learn"`), plus the contract that shapes its input."""

    def __init__(self, estimator: Any, contract: Contract, info: dict[str, Any], classes: list[str] | None = None,
                 onnx: OnnxModel | None = None) -> None:
        self.estimator = estimator
        self.onnx = onnx
        self.runtime = "onnxruntime" if onnx is not None else "scikit-learn"
        self.contract = contract
        self.info = info
        self.columns = contract.feature_names
        self._string_columns = [f.name for f in contract.fields if f.type in ("string", "category")]
        classes = classes if estimator is None else getattr(estimator, "classes_", None)
        self.classes = [str(c) for c in classes] if classes is not None and contract.task == "classification" else None
        self._positive = (self.classes.index(contract.positive_class)
                          if self.classes and contract.positive_class in self.classes else None)
        if estimator is not None:
            _single_thread(estimator)

    def values(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Class probabilities (rows x classes) or regression values for validated rows."""
        if self.onnx is not None:
            values = self.onnx.run(rows)
            return values if self.classes is not None else values.reshape(-1)
        frame = self.frame(rows)
        return self.estimator.predict_proba(frame) if self.classes is not None else self.estimator.predict(frame)

    def predict_rows(self, rows: list[dict[str, Any]]) -> Prediction:
        return self._prediction(self.values(rows))

    def is_fast(self, rows: int) -> bool:
        """True when a request of `rows` rows is cheap and bounded enough to run inline."""
        return self.onnx is not None and rows <= INLINE_MAX_ROWS

    def _prediction(self, values: np.ndarray) -> Prediction:
        values = np.ascontiguousarray(values)  # LightGBM's predict_proba is column-major; orjson needs C order
        if self.classes is None:
            return Prediction(values.astype(float).ravel().tolist(), None, None, None)
        labels = [self.classes[i] for i in values.argmax(axis=1)]
        scores = values[:, self._positive] if self._positive is not None else values.max(axis=1)
        return Prediction(labels, self.classes, values, scores)

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


class OnnxModel:
    """An ONNX graph with one input per feature column (double or string, shape rows x 1), run by
    onnxruntime. The session is made in the process that runs it (a forked worker makes its own:
    onnxruntime's threads do not survive fork), with `threads` intra-op threads."""

    def __init__(self, graph: bytes, threads: int = 1) -> None:
        self.graph = graph
        self.threads = max(1, threads)
        self._session: Any = None
        self._pid = -1
        self._inputs: list[tuple[str, bool]] = []  # (column, is_string)
        self._output: str = ""
        self._open()  # fail now on a broken graph, not at the first request; then dropped, so a
        # process forked from this one never inherits (and never tears down) a thread pool it lacks

    def _open(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])
        self._inputs = [(i.name, i.type == "tensor(string)") for i in session.get_inputs()]
        self._output = session.get_outputs()[-1].name  # classifiers: (label, probabilities); regressors: (value,)
        return session

    def session(self) -> Any:
        """This process's session, made on first use."""
        if self._pid != os.getpid():
            self._session, self._pid = self._open(), os.getpid()
        return self._session

    def feeds(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for name, is_string in self._inputs:
            if is_string:
                column = np.array([_category(row.get(name)) for row in rows], dtype=object)
            else:
                column = np.array([row.get(name) for row in rows], dtype=np.float64)  # None -> nan
            feeds[name] = column.reshape(-1, 1)
        return feeds

    def run(self, rows: list[dict[str, Any]]) -> np.ndarray:
        session = self.session()
        values: np.ndarray = session.run([self._output], self.feeds(rows))[0]
        return values.astype(np.float64, copy=False)


def _category(value: Any) -> str:
    """A categorical value as the graph's string input (bools as Python spells them, missing as NaN's name)."""
    return MISSING_CATEGORY if value is None else str(value)


def _single_thread(estimator: Any) -> None:
    """One thread per prediction: a joblib pool per request costs more than it saves (workers scale)."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if steps else estimator
    if "n_jobs" in getattr(final, "get_params", lambda: {})():
        final.set_params(n_jobs=1)


def intra_op_threads(workers: int) -> int:
    """onnxruntime threads per worker: the cores this process may use, shared by the workers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, workers))


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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_hash(model_dir: Path, info: dict[str, Any]) -> str:
    """SHA-256 of the serialized model file: what an ONNX graph was converted from."""
    return sha256(model_dir / info["flavors"]["sklearn"]["pickled_model"])


def load_onnx(model_dir: str | Path, contract: Contract, threads: int = 1) -> Predictor | None:
    """The ONNX graph next to the model, if it was converted (and verified) from this very model
    file and is itself unchanged (both SHA-256 in model.onnx.json). None when missing, stale or
    unreadable, or onnxruntime is not installed: use `load_sklearn`."""
    model_dir = Path(model_dir)
    try:
        info = read_mlmodel(model_dir)
        meta = json.loads((model_dir / ONNX_META).read_text(encoding="utf-8"))
        graph = (model_dir / ONNX_FILE).read_bytes()
        if meta.get("model_sha256") != model_hash(model_dir, info):
            return None
        if meta.get("onnx_sha256") != hashlib.sha256(graph).hexdigest():
            return None
        onnx = OnnxModel(graph, threads)
    except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError):
        return None  # onnxruntime's own errors derive from RuntimeError
    return Predictor(None, contract, info, classes=meta.get("classes"), onnx=onnx)


def load_sklearn(model_dir: str | Path, contract: Contract) -> Predictor:
    estimator, info = load_estimator(model_dir)
    return Predictor(estimator, contract, info)


def load(model_dir: str | Path, contract: Contract, onnx: bool = True, workers: int = 1) -> Predictor:
    """The ONNX graph when one was verified for this model file (and `onnx`), else scikit-learn."""
    loaded = load_onnx(model_dir, contract, intra_op_threads(workers)) if onnx else None
    return loaded or load_sklearn(model_dir, contract)


def warm_up_rows(model_dir: str | Path, contract: Contract) -> list[dict[str, Any]]:
    """Rows to warm the model with: the saved input example when present, else a synthetic row."""
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
