"""A NumPy fast path for small requests, verified against scikit-learn when the model loads.

Why: for one row, scikit-learn's per-call overhead (DataFrame checks in ColumnTransformer, a
Python loop over 200 trees) costs ~20 ms while the arithmetic takes microseconds. This compiles
the fitted pipeline, when it is made only of parts it knows (ColumnTransformer of SimpleImputer /
StandardScaler / OneHotEncoder pipelines, then a decision tree or a random/extra-trees forest),
into arrays, and walks all trees at once. It is used only if it reproduces scikit-learn's
output on hundreds of generated rows at load time; otherwise the server silently keeps
scikit-learn. Large batches always go through scikit-learn (it is as fast there).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from model.serving.contract import Contract

Transform = Callable[[list[dict[str, Any]]], np.ndarray]


class Unsupported(Exception):
    """The pipeline holds a part this fast path does not reproduce; use scikit-learn."""


def _numeric_block(columns: list[str], steps: list[Any]) -> Transform:
    fill = np.zeros(len(columns))
    mean, scale = np.zeros(len(columns)), np.ones(len(columns))
    has_fill = False
    for step in steps:
        kind = type(step).__name__
        if kind == "SimpleImputer" and not getattr(step, "add_indicator", False):
            fill, has_fill = np.asarray(step.statistics_, dtype=float), True
        elif kind == "StandardScaler":
            mean = step.mean_ if step.with_mean else mean
            scale = step.scale_ if step.with_std else scale
        else:
            raise Unsupported(kind)

    def transform(rows: list[dict[str, Any]]) -> np.ndarray:
        values = np.array([[row.get(c) for c in columns] for row in rows], dtype=float)
        if has_fill:
            values = np.where(np.isnan(values), fill, values)
        return (values - mean) / scale

    return transform


def _categorical_block(columns: list[str], steps: list[Any]) -> Transform:
    fill: list[Any] | None = None
    encoder = None
    for step in steps:
        kind = type(step).__name__
        if kind == "SimpleImputer" and not getattr(step, "add_indicator", False):
            fill = list(step.statistics_)
        elif kind == "OneHotEncoder" and step.handle_unknown in ("ignore", "infrequent_if_exist") and step.drop_idx_ is None \
                and not getattr(step, "_infrequent_enabled", False):
            encoder = step
        else:
            raise Unsupported(kind)
    if encoder is None:
        raise Unsupported("categorical block without OneHotEncoder")
    offsets = np.cumsum([0] + [len(c) for c in encoder.categories_])
    lookup = [{value: offsets[i] + j for j, value in enumerate(cats)} for i, cats in enumerate(encoder.categories_)]

    def transform(rows: list[dict[str, Any]]) -> np.ndarray:
        out = np.zeros((len(rows), offsets[-1]))
        for r, row in enumerate(rows):
            for i, column in enumerate(columns):
                value = row.get(column)
                if value is None and fill is not None:
                    value = fill[i]
                position = lookup[i].get(value)
                if position is not None:
                    out[r, position] = 1.0
        return out

    return transform


def compile_features(transformer: Any) -> Transform:
    if type(transformer).__name__ != "ColumnTransformer" or transformer.remainder != "drop":
        raise Unsupported("features are not a ColumnTransformer with remainder='drop'")
    blocks: list[Transform] = []
    for name, part, columns in transformer.transformers_:
        if name == "remainder" or part == "drop" or len(columns) == 0:
            continue
        steps = [s for _, s in part.steps] if type(part).__name__ == "Pipeline" else [part]
        kinds = {type(s).__name__ for s in steps}
        blocks.append(_categorical_block(list(columns), steps) if "OneHotEncoder" in kinds else _numeric_block(list(columns), steps))
    return lambda rows: np.hstack([block(rows) for block in blocks])


class Forest:
    """All trees of a fitted tree ensemble as padded arrays, walked level by level together."""

    def __init__(self, estimator: Any) -> None:
        kind = type(estimator).__name__
        if kind in ("DecisionTreeClassifier", "DecisionTreeRegressor"):
            trees = [estimator]
        elif kind in ("RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"):
            trees = list(estimator.estimators_)
        else:
            raise Unsupported(kind)
        self.classifier = kind.endswith("Classifier")
        structures = [t.tree_ for t in trees]
        size = max(s.node_count for s in structures)
        self.depth = max(s.max_depth for s in structures)
        count = len(structures)
        self.feature = np.zeros((count, size), dtype=np.intp)
        self.threshold = np.zeros((count, size))
        self.left = np.full((count, size), -1, dtype=np.intp)
        self.right = np.full((count, size), -1, dtype=np.intp)
        outputs = structures[0].value.shape[2] if self.classifier else 1
        self.value = np.zeros((count, size, outputs))
        for t, s in enumerate(structures):
            n = s.node_count
            self.feature[t, :n] = np.maximum(s.feature, 0)
            self.threshold[t, :n] = s.threshold
            self.left[t, :n], self.right[t, :n] = s.children_left, s.children_right
            value = s.value[:, 0, :]
            if self.classifier:
                value = value / value.sum(axis=1, keepdims=True)
            self.value[t, :n] = value
        self.trees = np.arange(count)
        self.structures = structures

    def predict_batch(self, features: np.ndarray) -> np.ndarray:
        """Large batches: scikit-learn's compiled `Tree.apply` per tree finds the leaves, one
        NumPy gather averages them (skips the per-tree Python overhead of predict_proba)."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        leaves = np.empty((x.shape[0], len(self.structures)), dtype=np.intp)
        for t, structure in enumerate(self.structures):
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

    def __init__(self, estimator: Any) -> None:
        steps = getattr(estimator, "steps", None)
        if not steps or len(steps) != 2:
            raise Unsupported("not a two-step Pipeline (features, estimator)")
        self.features = compile_features(steps[0][1])
        self.forest = Forest(steps[1][1])
        self.estimator = steps[1][1]

    def __call__(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return self.forest.predict(self.features(rows))

    def batch(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Large batches: compiled features (no DataFrame), then scikit-learn's own tree code."""
        return self.forest.predict_batch(self.features(rows))


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
                row[f.name] = int(round(value)) if f.type == "int" else float(value)
            elif f.type == "bool":
                row[f.name] = bool(rng.random() < 0.5)
            else:
                raise Unsupported(f"free-text field {f.name}")
        rows.append(row)
    return rows


def verified(estimator: Any, contract: Contract, reference: Callable[[list[dict[str, Any]]], np.ndarray],
             extra_rows: list[dict[str, Any]]) -> FastPath | None:
    """The fast path if it matches `reference` (scikit-learn) on generated and example rows, else None."""
    try:
        fast = FastPath(estimator)
        rows = extra_rows + generated_rows(contract, 500)
        expected = reference(rows)
        if not np.allclose(fast.batch(rows), expected, rtol=0, atol=1e-9):
            return None
        for batch in (rows, rows[:1], rows[1:4]):
            if not np.allclose(fast(batch), reference(batch), rtol=0, atol=1e-9):
                return None
        return fast
    except (Unsupported, AttributeError, ValueError, TypeError, IndexError, KeyError):
        return None
