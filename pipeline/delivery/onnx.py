"""Convert the fitted model to ONNX and keep it only if it answers as scikit-learn does.

Why: onnxruntime scores a row in tens of microseconds and needs neither scikit-learn nor SciPy,
so the image is smaller and faster (pipeline/serving/predictor.py). `mlops build` (and `mlops
serve`) call `convert`: skl2onnx converts the whole pipeline, features included, with one input
per feature column; the graph is written next to the model as `model.onnx`, with
`model.onnx.json` naming the SHA-256 of the model file it came from and of the graph. The graph
is then loaded by the serving code itself and compared with scikit-learn on the input example and
generated rows: labels must be equal and every score within TOLERANCE. A model that cannot be
converted or disagrees gets no graph and is served by scikit-learn; the result says why.
Converters for estimators outside scikit-learn are registered by model/ (`register_onnx_converters`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.serving import predictor
from pipeline.serving.contract import Contract

# A score may differ from scikit-learn's by at most ATOL + RTOL * |score|: the graph computes in
# float32 where scikit-learn uses float64 (about 1e-7 relative); 1e-4 leaves room for sums over
# hundreds of trees and still catches a wrong leaf, a wrong scaling or a wrong category.
ATOL = 1e-4
RTOL = 1e-4
GENERATED_ROWS = 500
# ONNX operator sets: the newest skl2onnx tests for the main domain; ai.onnx.ml 3, the newest
# onnxmltools' LightGBM converter writes (and onnxruntime runs every tree ensemble of it).
OPSETS = {"": 21, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class Conversion:
    """What became of the conversion: `ok` means model.onnx is in place and verified."""

    ok: bool
    detail: str
    rows: int = 0
    max_difference: float | None = None

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.ok else "scikit-learn"


def generated_rows(contract: Contract, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Rows spread over the contract's ranges and categories, with missing values where allowed."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        row: dict[str, Any] = {}
        for f in contract.fields:
            if f.nullable and rng.random() < 0.15:
                row[f.name] = None
            elif f.allowed:
                row[f.name] = str(rng.choice(f.allowed))
            elif f.type in ("float", "int"):
                low = f.min if f.min is not None else -1e3
                high = f.max if f.max is not None else 1e3
                value = rng.uniform(low, high)
                row[f.name] = round(value) if f.type == "int" else float(value)
            elif f.type == "bool":
                row[f.name] = bool(rng.random() < 0.5)
            else:  # free text: any string, mostly unseen in training
                row[f.name] = f"text-{rng.integers(10)}"
        rows.append(row)
    return rows


def input_types(contract: Contract) -> list[tuple[str, Any]]:
    """One graph input per feature column: double for numbers (the features are then computed in
    float64 as scikit-learn does), string for categories and bools."""
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    return [(f.name, DoubleTensorType([None, 1]) if f.type in ("float", "int") else StringTensorType([None, 1]))
            for f in contract.fields]


def _int_missing_flags() -> None:
    """skl2onnx 1.20 passes a Python bool as a leaf's `nodes_missing_value_tracks_true` when it
    converts HistGradientBoosting, which protobuf 7 refuses in an int list ("Expected an int, got a
    boolean"); cast it to int. Idempotent; a no-op once skl2onnx passes ints itself."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "casts_missing_flags", False):
        return

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    add_node.casts_missing_flags = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node


def _double_imputer() -> None:
    """SimpleImputer on numbers as `Where(IsNaN(x), statistics, x)` in float64. skl2onnx's own
    converter emits ai.onnx.ml's Imputer, which onnxruntime runs in float32 only (and which rounds
    the medians to float32): a value at a tree's threshold then falls on the other side. Other
    imputers (strings, integers) keep skl2onnx's converter."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import get_converter
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.proto import onnx_proto
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.impute import SimpleImputer

    original = get_converter("SklearnSimpleImputer")
    if getattr(original, "in_double", False):
        return

    def convert(scope: Any, operator: Any, container: Any) -> None:
        imputer = operator.raw_operator
        double = all(isinstance(i.type, DoubleTensorType) for i in operator.inputs)
        if not double or not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)) \
                or getattr(imputer, "add_indicator", False):
            original(scope, operator, container)
            return
        from skl2onnx.common._apply_operation import apply_concat

        names = [i.full_name for i in operator.inputs]
        if len(names) > 1:
            joined = scope.get_unique_variable_name("joined")
            apply_concat(scope, names, joined, container, axis=1)
        else:
            joined = names[0]
        fill = scope.get_unique_variable_name("fill")
        container.add_initializer(fill, onnx_proto.TensorProto.DOUBLE, [1, imputer.statistics_.size],
                                  imputer.statistics_.astype(np.float64).tolist())
        missing = scope.get_unique_variable_name("missing")
        container.add_node("IsNaN", [joined], [missing], name=scope.get_unique_operator_name("IsNaN"))
        container.add_node("Where", [missing, fill, joined], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Where"))

    convert.in_double = True  # type: ignore[attr-defined]
    update_registered_converter(SimpleImputer, "SklearnSimpleImputer", calculate_sklearn_imputer_output_shapes, convert)


def to_onnx(estimator: Any, contract: Contract) -> bytes:
    """The fitted pipeline as one ONNX graph: the feature steps in float64 (as scikit-learn computes
    them), a cast to float32, then the estimator (scikit-learn's trees compare float32 values, and
    skl2onnx sets the thresholds so that float32 comparisons match them). Classifiers output plain
    probabilities (no ZipMap)."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.pipeline import Pipeline

    from model import register_onnx_converters

    register_onnx_converters()
    _int_missing_flags()
    _double_imputer()
    steps = estimator.steps if isinstance(estimator, Pipeline) else []
    if len(steps) < 2:
        raise ValueError("expected a Pipeline of feature steps and an estimator (model.build_model)")
    final = steps[-1][1]
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    features = convert_sklearn(Pipeline(steps[:-1]), initial_types=input_types(contract), target_opset=OPSETS)
    head = convert_sklearn(final, initial_types=[("features", FloatTensorType([None, final.n_features_in_]))],
                           options=options, target_opset=OPSETS)
    computed = features.graph.output[0].name
    features.graph.node.append(onnx.helper.make_node("Cast", [computed], ["features32"], to=onnx.TensorProto.FLOAT))
    del features.graph.output[:]
    width = final.n_features_in_
    features.graph.output.append(onnx.helper.make_tensor_value_info("features32", onnx.TensorProto.FLOAT, [None, width]))
    opsets: dict[str, int] = {}
    for part in (features, head):
        for opset in part.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    for part in (features, head):
        del part.opset_import[:]
        part.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in opsets.items())
        part.ir_version = max(features.ir_version, head.ir_version)
    merged = onnx.compose.merge_models(features, head, io_map=[("features32", "features")], prefix2="estimator_")
    return merged.SerializeToString()


def verify(model_dir: Path, contract: Contract, reference: predictor.Predictor) -> Conversion:
    """Load the graph next to the model as the server would and compare it with `reference`
    (scikit-learn) on the input example and generated rows, as one batch and row by row."""
    loaded = predictor.load_onnx(model_dir, contract)
    if loaded is None:
        return Conversion(False, "onnxruntime cannot load the converted graph")
    rows = predictor.warm_up_rows(model_dir, contract) + generated_rows(contract, GENERATED_ROWS)
    expected = reference.values(rows)
    batches = [loaded.values(rows), np.concatenate([loaded.values([row]) for row in rows[:50]])]
    worst = 0.0
    for got in batches:
        want = expected[: len(got)]
        if got.shape != want.shape:
            return Conversion(False, f"output shape {got.shape} differs from scikit-learn's {want.shape}")
        if reference.classes is not None and not np.array_equal(got.argmax(axis=1), want.argmax(axis=1)):
            wrong = int((got.argmax(axis=1) != want.argmax(axis=1)).sum())
            return Conversion(False, f"labels differ from scikit-learn's on {wrong} of {len(got)} rows")
        difference = np.abs(got - want)
        worst = max(worst, float(difference.max(initial=0.0)))
        if not np.all(difference <= ATOL + RTOL * np.abs(want)):
            return Conversion(False, f"scores differ from scikit-learn's by up to {worst:.3g} "
                                     f"(tolerance {ATOL:g} + {RTOL:g} x |score|)", len(rows), worst)
    return Conversion(True, f"verified on {len(rows)} rows, largest score difference {worst:.2g}", len(rows), worst)


def write(model_dir: Path, graph: bytes, reference: predictor.Predictor) -> None:
    """model.onnx, then model.onnx.json (which names both hashes, so it commits the pair)."""
    meta = {"model_sha256": predictor.model_hash(model_dir, reference.info),
            "onnx_sha256": hashlib.sha256(graph).hexdigest(), "classes": reference.classes,
            "tolerance": {"atol": ATOL, "rtol": RTOL}}
    for name, content in ((predictor.ONNX_FILE, graph), (predictor.ONNX_META, json.dumps(meta, indent=2).encode())):
        temporary = model_dir / f"{name}.tmp{os.getpid()}"
        temporary.write_bytes(content)
        os.replace(temporary, model_dir / name)


def remove(model_dir: Path) -> None:
    for name in (predictor.ONNX_META, predictor.ONNX_FILE):
        (model_dir / name).unlink(missing_ok=True)


def convert(model_dir: str | Path, contract: Contract) -> Conversion:
    """Convert, write and verify; on any failure leave no graph behind (scikit-learn serves)."""
    model_dir = Path(model_dir)
    reference = predictor.load_sklearn(model_dir, contract)
    remove(model_dir)
    try:
        graph = to_onnx(reference.estimator, contract)
    except Exception as exc:  # skl2onnx raises many kinds for a part it cannot convert
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Conversion(False, f"skl2onnx cannot convert it: {reason[:300]}")
    try:
        write(model_dir, graph, reference)
    except OSError as exc:
        return Conversion(False, f"cannot write next to the model: {exc}")
    result = verify(model_dir, contract, reference)
    if not result.ok:
        remove(model_dir)
    return result
