"""The ONNX conversion the build runs (pipeline/delivery/onnx.py): every built-in estimator, for
both tasks, converts with its features and agrees with scikit-learn; a graph that disagrees, a
model that cannot convert, and a graph made from another model file are never served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml

from model import ModelSpec, build_model
from model.estimator import ESTIMATORS
from pipeline.delivery import onnx
from pipeline.serving import predictor
from pipeline.serving.contract import Contract, FieldSpec

CONTRACT = Contract("demo", "classification", "label", "yes", [
    FieldSpec("colour", "category", nullable=True, allowed=["red", "green", "blue"]),
    FieldSpec("size", "float", nullable=True, min=0.0, max=20.0),
    FieldSpec("count", "int", min=0, max=9),
    FieldSpec("flag", "bool"),
])


def frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features with missing numbers and categories, a class label and a regression target."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], n).astype(object), "size": rng.uniform(0, 20, n),
                      "count": rng.integers(0, 10, n), "flag": rng.random(n) < 0.5})
    x.loc[rng.choice(n, n // 10, replace=False), "size"] = np.nan
    x.loc[rng.choice(n, n // 10, replace=False), "colour"] = np.nan
    value = x["size"].fillna(10) / 4 + np.where(x["colour"] == "red", 2.0, 0.0) + x["count"] * 0.3 + rng.normal(0, 1, n)
    return x, np.where(value > 4.5, "yes", "no"), value.to_numpy()


def save(fitted, dest: Path) -> Path:
    """An MLflow-layout model directory (MLmodel + skops file) as `mlops train` writes it."""
    dest.mkdir(parents=True)
    sio.dump(fitted, dest / "model.skops")
    trusted = sio.get_untrusted_types(file=dest / "model.skops")
    mlmodel = {"flavors": {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops",
                                       "skops_trusted_types": trusted}}}
    (dest / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return dest


def fitted_model(tmp_path: Path, estimator: str, task: str, **params) -> tuple[Path, Contract]:
    x, label, value = frame()
    spec = ModelSpec(task, ("size", "count"), ("colour", "flag"), estimator, params, seed=3)
    model = build_model(spec).fit(x, label if task == "classification" else value)
    contract = Contract(CONTRACT.project, task, CONTRACT.target, CONTRACT.positive_class if task == "classification" else None,
                        CONTRACT.fields)
    return save(model, tmp_path / f"{estimator}-{task}"), contract


SMALL = {"random_forest": {"n_estimators": 30, "max_depth": 6}, "hist_gradient_boosting": {"max_iter": 30},
         "linear": {}, "lightgbm": {"n_estimators": 30}, "xgboost": {"n_estimators": 30}}


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_built_in_estimator_converts_and_agrees(tmp_path: Path, name: str, task: str) -> None:
    model_dir, contract = fitted_model(tmp_path, name, task, **SMALL[name])
    result = onnx.convert(model_dir, contract)
    assert result.ok, result.detail
    assert result.rows == 1 + onnx.GENERATED_ROWS and result.max_difference is not None
    served = predictor.load(model_dir, contract)
    assert served.runtime == "onnxruntime" and served.estimator is None
    reference = predictor.load_sklearn(model_dir, contract)
    rows = [*onnx.generated_rows(contract, 200, seed=9), {"colour": None, "size": None, "count": 0, "flag": True}]
    got, want = served.predict_rows(rows), reference.predict_rows(rows)
    if task == "classification":
        assert got.predictions == want.predictions and got.classes == want.classes == ["no", "yes"]
        assert got.scores is not None and want.scores is not None
        assert np.allclose(got.scores, want.scores, rtol=onnx.RTOL, atol=onnx.ATOL)
    else:
        assert np.allclose(got.predictions, want.predictions, rtol=onnx.RTOL, atol=onnx.ATOL)


def test_an_altered_graph_is_refused(tmp_path: Path) -> None:
    """A graph whose trees were changed after conversion disagrees with scikit-learn: the
    verification refuses it, and even rehashed it is not what the build keeps."""
    import onnx as onnx_lib

    model_dir, contract = fitted_model(tmp_path, "random_forest", "classification", **SMALL["random_forest"])
    assert onnx.convert(model_dir, contract).ok
    graph = onnx_lib.load(str(model_dir / predictor.ONNX_FILE))
    trees = next(node for node in graph.graph.node if node.op_type.startswith("TreeEnsemble"))
    for attribute in trees.attribute:
        if attribute.name in ("class_weights", "target_weights"):
            attribute.floats[:] = list(reversed(attribute.floats))  # leaves answer another class
        elif attribute.name == "class_weights_as_tensor":
            values = onnx_lib.numpy_helper.to_array(attribute.t)[::-1].copy()
            attribute.t.CopyFrom(onnx_lib.numpy_helper.from_array(values))
    altered = graph.SerializeToString()
    reference = predictor.load_sklearn(model_dir, contract)
    onnx.write(model_dir, altered, reference)  # rehashed: only the comparison can catch it
    result = onnx.verify(model_dir, contract, reference)
    assert not result.ok and "differ from scikit-learn" in result.detail


def test_a_tampered_or_stale_graph_is_not_served(tmp_path: Path) -> None:
    model_dir, contract = fitted_model(tmp_path, "linear", "classification")
    assert onnx.convert(model_dir, contract).ok
    assert predictor.load(model_dir, contract).runtime == "onnxruntime"
    meta_path = model_dir / predictor.ONNX_META
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model_sha256": "0" * 64}))  # converted from another model file
    assert predictor.load_onnx(model_dir, contract) is None
    assert predictor.load(model_dir, contract).runtime == "scikit-learn"
    meta_path.write_text(json.dumps(meta))
    (model_dir / predictor.ONNX_FILE).write_bytes((model_dir / predictor.ONNX_FILE).read_bytes() + b"\0")
    assert predictor.load(model_dir, contract).runtime == "scikit-learn"


def test_a_model_that_cannot_convert_is_served_by_scikit_learn(tmp_path: Path) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, label, _ = frame()
    spec = ModelSpec("classification", ("size", "count"), ("colour", "flag"), "linear", {}, seed=3)
    features, estimator = build_model(spec).steps
    model = Pipeline([features, ("abs", FunctionTransformer(np.abs)), estimator]).fit(x, label)  # no converter
    model_dir = save(model, tmp_path / "custom")
    (model_dir / predictor.ONNX_FILE).write_bytes(b"stale")  # left by an earlier build: removed
    result = onnx.convert(model_dir, CONTRACT)
    assert not result.ok and result.detail.startswith("skl2onnx cannot convert it")
    assert not (model_dir / predictor.ONNX_FILE).exists() and not (model_dir / predictor.ONNX_META).exists()
    assert predictor.load(model_dir, CONTRACT).runtime == "scikit-learn"
