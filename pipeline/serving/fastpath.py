"""A NumPy fast path, verified against scikit-learn before it is ever used.

Why: for one row, scikit-learn's per-call overhead (DataFrame checks in ColumnTransformer, a
Python loop over 200 trees) costs ~20 ms while the arithmetic takes microseconds. This compiles
the fitted pipeline, when it is made only of parts it knows (ColumnTransformer of SimpleImputer /
StandardScaler / OneHotEncoder pipelines, then a decision tree or a random/extra-trees forest),
into arrays, and walks all trees at once. It is used only if it reproduces scikit-learn's
output on hundreds of generated rows; otherwise the server silently keeps scikit-learn.
The verified arrays are saved next to the model (`save`/`load`, NumPy only), so a server can
start without importing scikit-learn at all (see predictor.load_compiled).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.serving.contract import Contract


class Unsupported(Exception):
    """The pipeline holds a part this fast path does not reproduce; use scikit-learn."""


class Numeric:
    """Imputed, standardized numeric columns (SimpleImputer / StandardScaler)."""

    def __init__(self, columns: list[str], fill: np.ndarray | None, mean: np.ndarray, scale: np.ndarray) -> None:
        self.columns, self.fill, self.mean, self.scale = columns, fill, mean, scale

    @classmethod
    def from_steps(cls, columns: list[str], steps: list[Any]) -> Numeric:
        fill, mean, scale = None, np.zeros(len(columns)), np.ones(len(columns))
        for step in steps:
            kind = type(step).__name__
            if kind == "SimpleImputer" and not getattr(step, "add_indicator", False):
                fill = np.asarray(step.statistics_, dtype=float)
            elif kind == "StandardScaler":
                mean = np.asarray(step.mean_, dtype=float) if step.with_mean else mean
                scale = np.asarray(step.scale_, dtype=float) if step.with_std else scale
            else:
                raise Unsupported(kind)
        return cls(columns, fill, mean, scale)

    def __call__(self, rows: list[dict[str, Any]]) -> np.ndarray:
        values = np.array([[row.get(c) for c in self.columns] for row in rows], dtype=float)
        if self.fill is not None:
            values = np.where(np.isnan(values), self.fill, values)
        return (values - self.mean) / self.scale


class Categorical:
    """Imputed, one-hot encoded categorical columns (unknown categories encode as all zeros)."""

    def __init__(self, columns: list[str], fill: list[Any] | None, categories: list[list[Any]]) -> None:
        self.columns, self.fill, self.categories = columns, fill, categories
        self.offsets = np.cumsum([0] + [len(c) for c in categories])
        self.lookup = [{value: self.offsets[i] + j for j, value in enumerate(cats)} for i, cats in enumerate(categories)]

    @classmethod
    def from_steps(cls, columns: list[str], steps: list[Any]) -> Categorical:
        fill: list[Any] | None = None
        encoder = None
        for step in steps:
            kind = type(step).__name__
            if kind == "SimpleImputer" and not getattr(step, "add_indicator", False):
                fill = [_plain(v) for v in step.statistics_]
            elif kind == "OneHotEncoder" and step.handle_unknown in ("ignore", "infrequent_if_exist") and step.drop_idx_ is None \
                    and not getattr(step, "_infrequent_enabled", False):
                encoder = step
            else:
                raise Unsupported(kind)
        if encoder is None:
            raise Unsupported("categorical block without OneHotEncoder")
        return cls(columns, fill, [[_plain(v) for v in cats] for cats in encoder.categories_])

    def __call__(self, rows: list[dict[str, Any]]) -> np.ndarray:
        out = np.zeros((len(rows), self.offsets[-1]))
        for r, row in enumerate(rows):
            for i, column in enumerate(self.columns):
                value = row.get(column)
                if value is None and self.fill is not None:
                    value = self.fill[i]
                position = self.lookup[i].get(value)
                if position is not None:
                    out[r, position] = 1.0
        return out


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


class Features:
    """The fitted ColumnTransformer as NumPy blocks, concatenated in its output order."""

    def __init__(self, blocks: list[Numeric | Categorical]) -> None:
        self.blocks = blocks

    @classmethod
    def from_transformer(cls, transformer: Any) -> Features:
        if type(transformer).__name__ != "ColumnTransformer" or transformer.remainder != "drop":
            raise Unsupported("features are not a ColumnTransformer with remainder='drop'")
        blocks: list[Numeric | Categorical] = []
        for name, part, columns in transformer.transformers_:
            if name == "remainder" or part == "drop" or len(columns) == 0:
                continue
            steps = [s for _, s in part.steps] if type(part).__name__ == "Pipeline" else [part]
            kinds = {type(s).__name__ for s in steps}
            block = Categorical if "OneHotEncoder" in kinds else Numeric
            blocks.append(block.from_steps(list(columns), steps))
        return cls(blocks)

    def __call__(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return np.hstack([block(rows) for block in self.blocks])


class Forest:
    """All trees of a fitted tree ensemble as padded arrays, walked level by level together.

    `structures` (scikit-learn's own tree objects) is only set when scikit-learn is loaded; large
    batches use it, and walk the arrays in NumPy until then."""

    ARRAYS = ("feature", "threshold", "left", "right", "value")

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray, right: np.ndarray,
                 value: np.ndarray, depth: int, classifier: bool, structures: list[Any] | None = None) -> None:
        self.feature, self.threshold, self.left, self.right, self.value = feature, threshold, left, right, value
        self.depth, self.classifier, self.structures = depth, classifier, structures
        self.trees = np.arange(len(feature))

    @classmethod
    def from_estimator(cls, estimator: Any) -> Forest:
        kind = type(estimator).__name__
        if kind in ("DecisionTreeClassifier", "DecisionTreeRegressor"):
            trees = [estimator]
        elif kind in ("RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"):
            trees = list(estimator.estimators_)
        else:
            raise Unsupported(kind)
        classifier = kind.endswith("Classifier")
        structures = [t.tree_ for t in trees]
        size = max(s.node_count for s in structures)
        count = len(structures)
        feature = np.zeros((count, size), dtype=np.intp)
        threshold = np.zeros((count, size))
        left = np.full((count, size), -1, dtype=np.intp)
        right = np.full((count, size), -1, dtype=np.intp)
        value = np.zeros((count, size, structures[0].value.shape[2] if classifier else 1))
        for t, s in enumerate(structures):
            n = s.node_count
            feature[t, :n] = np.maximum(s.feature, 0)
            threshold[t, :n] = s.threshold
            left[t, :n], right[t, :n] = s.children_left, s.children_right
            leaf_value = s.value[:, 0, :]
            value[t, :n] = leaf_value / leaf_value.sum(axis=1, keepdims=True) if classifier else leaf_value
        return cls(feature, threshold, left, right, value, max(s.max_depth for s in structures), classifier, structures)

    def predict_batch(self, features: np.ndarray) -> np.ndarray:
        """Large batches: scikit-learn's compiled `Tree.apply` per tree finds the leaves, one
        NumPy gather averages them (skips the per-tree Python overhead of predict_proba)."""
        structures = self.structures
        if structures is None:  # scikit-learn not loaded (yet)
            return self.predict(features)
        x = np.ascontiguousarray(features, dtype=np.float32)
        leaves = np.empty((x.shape[0], len(structures)), dtype=np.intp)
        for t, structure in enumerate(structures):
            leaves[:, t] = structure.apply(x)
        result = self.value[self.trees, leaves].mean(axis=1)
        return result if self.classifier else result[:, 0]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (classifier) or values (regressor), as scikit-learn computes them."""
        x = features.astype(np.float32).astype(np.float64)  # trees compare float32 inputs
        node = np.zeros((x.shape[0], len(self.trees)), dtype=np.intp)
        rows = np.arange(x.shape[0])[:, None]
        for _ in range(self.depth):
            left = self.left[self.trees, node]
            leaf = left == -1
            if leaf.all():
                break
            go_left = x[rows, self.feature[self.trees, node]] <= self.threshold[self.trees, node]
            node = np.where(leaf, node, np.where(go_left, left, self.right[self.trees, node]))
        values = self.value[self.trees, node]  # rows x trees x outputs
        result = values.mean(axis=1)
        return result if self.classifier else result[:, 0]


class FastPath:
    """features -> forest for rows given as dicts (already validated against the contract)."""

    def __init__(self, features: Features, forest: Forest) -> None:
        self.features, self.forest = features, forest

    @classmethod
    def from_estimator(cls, estimator: Any) -> FastPath:
        steps = getattr(estimator, "steps", None)
        if not steps or len(steps) != 2:
            raise Unsupported("not a two-step Pipeline (features, estimator)")
        return cls(Features.from_transformer(steps[0][1]), Forest.from_estimator(steps[1][1]))

    def attach(self, estimator: Any) -> None:
        """Give large batches scikit-learn's compiled trees (once scikit-learn is loaded)."""
        self.forest.structures = Forest.from_estimator(estimator.steps[1][1]).structures

    def __call__(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return self.forest.predict(self.features(rows))

    def batch(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Large batches: compiled features (no DataFrame), then scikit-learn's own tree code."""
        return self.forest.predict_batch(self.features(rows))


# The compiled artifact: `fastpath.json` (blocks, classes, the model file's hash) and `fastpath.npz`
# (the arrays) next to the model. NumPy alone loads it: no scikit-learn, scipy or skops.
ARTIFACT_FORMAT = 1
ARTIFACT_JSON, ARTIFACT_NPZ = "fastpath.json", "fastpath.npz"


def save(fast: FastPath, directory: Path, meta: dict[str, Any], suffix: str = "") -> None:
    """Write the artifact (`suffix` names a temporary copy); `meta` adds e.g. the model hash."""
    arrays = {name: getattr(fast.forest, name) for name in Forest.ARRAYS}
    blocks: list[dict[str, Any]] = []
    for i, block in enumerate(fast.features.blocks):
        if isinstance(block, Numeric):
            blocks.append({"kind": "numeric", "columns": block.columns, "fill": block.fill is not None})
            arrays.update({f"b{i}_mean": block.mean, f"b{i}_scale": block.scale})
            if block.fill is not None:
                arrays[f"b{i}_fill"] = block.fill
        else:
            blocks.append({"kind": "categorical", "columns": block.columns, "fill": block.fill, "categories": block.categories})
    with open(directory / (ARTIFACT_NPZ + suffix), "wb") as handle:
        np.savez(handle, **arrays)
    doc = {"format": ARTIFACT_FORMAT, **meta, "depth": fast.forest.depth, "classifier": fast.forest.classifier, "blocks": blocks}
    (directory / (ARTIFACT_JSON + suffix)).write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")


def load(directory: Path, suffix: str = "") -> tuple[FastPath, dict[str, Any]]:
    """The artifact written by `save` and its metadata (raises OSError/ValueError/KeyError if unreadable)."""
    doc = json.loads((directory / (ARTIFACT_JSON + suffix)).read_text(encoding="utf-8"))
    if doc.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"fast path artifact format {doc.get('format')}, expected {ARTIFACT_FORMAT}")
    with np.load(directory / (ARTIFACT_NPZ + suffix), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    blocks: list[Numeric | Categorical] = []
    for i, block in enumerate(doc["blocks"]):
        if block["kind"] == "numeric":
            blocks.append(Numeric(block["columns"], arrays[f"b{i}_fill"] if block["fill"] else None,
                                  arrays[f"b{i}_mean"], arrays[f"b{i}_scale"]))
        else:
            blocks.append(Categorical(block["columns"], block["fill"], block["categories"]))
    feature, threshold, left, right, value = (arrays[name] for name in Forest.ARRAYS)
    forest = Forest(feature, threshold, left, right, value, depth=doc["depth"], classifier=doc["classifier"])
    return FastPath(Features(blocks), forest), doc


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
            else:
                raise Unsupported(f"free-text field {f.name}")
        rows.append(row)
    return rows


def verification_rows(contract: Contract, extra_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a fast path must reproduce scikit-learn on: the examples plus 500 generated ones."""
    return extra_rows + generated_rows(contract, 500)


def agrees(fast: FastPath, reference: Callable[[list[dict[str, Any]]], np.ndarray], rows: list[dict[str, Any]]) -> bool:
    """True when `fast` (batch and small-request paths) matches `reference` (scikit-learn) on `rows`."""
    if not np.allclose(fast.batch(rows), reference(rows), rtol=0, atol=1e-9):
        return False
    return all(np.allclose(fast(batch), reference(batch), rtol=0, atol=1e-9) for batch in (rows, rows[:1], rows[1:4]))


def verified(estimator: Any, contract: Contract, reference: Callable[[list[dict[str, Any]]], np.ndarray],
             extra_rows: list[dict[str, Any]]) -> FastPath | None:
    """The fast path if it matches `reference` (scikit-learn) on generated and example rows, else None."""
    try:
        fast = FastPath.from_estimator(estimator)
        return fast if agrees(fast, reference, verification_rows(contract, extra_rows)) else None
    except (Unsupported, AttributeError, ValueError, TypeError, IndexError, KeyError):
        return None
