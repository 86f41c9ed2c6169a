"""Write mlops.yaml for a new CSV file, ready to run (`mlops init --data FILE --target COLUMN`).

A setup command, not a pipeline step: it reads the file once (with the same checks and messages
as `mlops validate`), infers the data contract from it, writes a seeded reference snapshot beside
the data, measures a baseline (a quick cross-validated fit of the template's model and a dummy
predictor) and sets the gates relative to it. Every number it writes is explained by a YAML
comment next to it, so the file reads as a first draft to review, not as magic.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError, clip

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.config import Config

RANGE_MARGIN = 0.10  # bounds are the observed min/max widened by this share of the observed span
CATEGORY_CAP = 20  # text columns with at most this many distinct values become categories
NULL_MARGIN = 0.05  # allowed null rate = observed rate + this
SLICE_MAX_GROUPS = 10  # slices only on categorical features with 2..this many groups
SLICE_COLUMNS = 3  # at most this many slice columns
# 4 folds: each fold's test part is 25% of the rows, like mlops run's test split (test_size 0.25),
# so the spread of fold scores is the spread of that test score; repeated for a steadier spread on
# small files (up to REPEAT_MAX_ROWS rows), where that spread is widest and the fits are cheap.
CV_FOLDS, CV_REPEATS, REPEAT_MAX_ROWS = 4, 3, 2_000
CV_MAX_ROWS = 5_000  # the baseline fit uses a seeded sample of at most this many rows
REFERENCE_SHARE, REFERENCE_MAX_ROWS = 0.5, 10_000
SEED = 42
ESTIMATOR = "random_forest"
PARAMS = {"n_estimators": 200, "min_samples_leaf": 2}
GATES = {
    "classification": (("accuracy", "higher"), ("balanced_accuracy", "higher"), ("roc_auc", "higher")),
    "regression": (("r2", "higher"), ("rmse", "lower"), ("mae", "lower")),
}
ID_NAME = re.compile(r"(^|[_\W])(id|key|uuid)$|Id$|ID$", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="FILE", help="the labelled CSV file")
    parser.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    parser.add_argument("--task", choices=("classification", "regression"),
                        help="default: regression for a numeric target with more than "
                             f"{CATEGORY_CAP} distinct values, else classification")
    parser.add_argument("--id-column", metavar="C", help="a unique row key (default: a unique column named like an id)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing config file")


def main(args: argparse.Namespace) -> int:
    """Infer, measure, write: mlops.yaml (at --config) and the reference snapshot beside the data."""
    import time

    started = time.perf_counter()
    out = Path(args.config)
    if out.exists() and not args.force:
        raise PipelineError(f"{out}: already exists; pass --force to overwrite it")
    data = Path(args.data)
    draft = infer(data, args.target, args.task, args.id_column)
    reference = write_reference(data, draft.rows)
    root = out.resolve().parent
    draft.paths = (_relative(data, root), _relative(reference, root))
    measure(draft, data, root)
    text = render(draft)
    _check(text, out)
    from pipeline.files import write_text

    write_text(out, text)
    print(f"init: wrote {out} ({len(draft.columns)} columns, task {draft.task}) and the reference {reference} "
          f"in {time.perf_counter() - started:.1f}s; next: mlops run", flush=True)
    return 0


# --- the contract ----------------------------------------------------------------------------


@dataclass
class Column:
    """One inferred column and the reasons for what was inferred (written as its comment)."""

    name: str
    type: str
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    groups: int = 0  # distinct values of a categorical column


@dataclass
class Draft:
    """Everything the written config says, before it is rendered."""

    source: str
    rows: int
    target: str
    task: str
    id_column: str | None
    columns: list[Column]
    positive_class: str | None = None
    paths: tuple[str, str] = ("", "")
    baseline: dict[str, Any] = field(default_factory=dict)
    gates: list[tuple[str, float, str, str]] = field(default_factory=list)  # metric, threshold, direction, why
    slices: list[tuple[str, str, str, float, str]] = field(default_factory=list)  # column, metric, bound, value, why
    champion: tuple[str, str, float, str] = ("", "higher", 0.0, "")
    example: dict[str, Any] = field(default_factory=dict)
    example_answer: Any = None


def infer(path: Path, target: str, task: str | None, id_column: str | None) -> Draft:
    """Read the file (the same errors as `mlops validate`) and infer every column's contract."""
    from pipeline.data import read_csv

    frame = read_csv(path)
    names = [str(c) for c in frame.columns]
    for option, name in (("--target", target), ("--id-column", id_column)):
        if name is not None and name not in names:
            raise PipelineError(f"{path}: {option} {clip(name)!r} is not a column; the columns are: "
                                f"{clip(', '.join(names), 300)}")
    if frame[target].isna().all():
        raise PipelineError(f"{path}: column {target!r}: the target has no values")
    numeric_target = _numbers(frame[target]) is not None
    if task is None:
        distinct = frame[target].nunique()
        task = "regression" if numeric_target and distinct > CATEGORY_CAP else "classification"
    if task == "regression" and not numeric_target:
        raise PipelineError(f"{path}: column {target!r}: --task regression needs a numeric target")
    if id_column is None:
        id_column = next((n for n in names if n != target and ID_NAME.search(n) and frame[n].notna().all()
                          and frame[n].is_unique), None)
    columns = [_column(frame[name], name, target, task, id_column) for name in names]
    draft = Draft(source=str(path), rows=len(frame), target=target, task=task, id_column=id_column, columns=columns)
    if task == "classification":
        counts = frame[target].dropna().astype(str).value_counts()
        if len(counts) < 2:
            raise PipelineError(f"{path}: column {target!r}: classification needs at least 2 classes, found {len(counts)}")
        draft.positive_class = str(counts.index[-1])  # the rarest class (ties: the later one)
    return draft


def _numbers(series: pd.Series) -> pd.Series | None:
    """The column as float64 when every value is a number (text "59.0" included), else None."""
    import pandas as pd
    from pandas.api import types

    if types.is_bool_dtype(series.dtype):
        return None
    if types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    numbers = pd.to_numeric(series, errors="coerce")
    return numbers.astype("float64") if not (numbers.isna() & series.notna()).any() else None


def _column(series: pd.Series, name: str, target: str, task: str, id_column: str | None) -> Column:
    """The contract of one column, with the reasons as notes."""
    import numpy as np
    from pandas.api import types

    nulls = int(series.isna().sum())
    present = series.dropna()
    numbers = _numbers(series)
    if name == target and task == "classification":
        classes = sorted(present.astype(str).unique())
        column = Column(name, "category", {"allowed": classes}, [f"target: {len(classes)} classes"], len(classes))
    elif types.is_bool_dtype(series.dtype):
        column = Column(name, "bool")
    elif numbers is not None:
        finite = numbers[np.isfinite(numbers)]
        integral = bool(len(finite)) and bool((finite == np.floor(finite)).all()) and bool((finite.abs() < 2**53).all())
        column = Column(name, "int" if integral else "float")
        if integral and not types.is_integer_dtype(series.dtype):
            column.notes.append("integer-valued floats in the file: declared int")
        if len(finite):
            column.spec.update(_bounds(float(finite.min()), float(finite.max()), integral))
        if len(finite) < len(numbers.dropna()):
            column.notes.append("the file holds inf or nan values: the contract refuses them, fix the data")
    else:
        text = present.astype(str)
        distinct = int(text.nunique())
        if distinct <= CATEGORY_CAP and name != id_column:
            column = Column(name, "category", {"allowed": sorted(text.unique())}, [], distinct)
        else:
            column = Column(name, "string")
            if name != id_column:
                column.spec["feature"] = False
                column.notes.append(f"{distinct} distinct values (> {CATEGORY_CAP}): not a feature")
    if name == id_column:
        column.spec["unique"] = True
        column.notes.append("row key (data.id_column): never a feature")
    if nulls:
        rate = nulls / len(series)
        allowed = min(1.0, math.ceil((rate + NULL_MARGIN) * 100) / 100)
        column.spec.update({"nullable": True, "max_null_rate": allowed})
        column.notes.append(f"{rate:.1%} null observed; max_null_rate = observed + {NULL_MARGIN:.0%}")
    return column


def _bounds(low: float, high: float, integral: bool) -> dict[str, float]:
    """[min, max] widened by RANGE_MARGIN of the span each side, rounded outward; a column never
    negative in the data stays >= 0."""
    span = high - low
    margin = RANGE_MARGIN * span if span > 0 else max(abs(high) * RANGE_MARGIN, 1.0)
    lo, hi = low - margin, high + margin
    if low >= 0 > lo:
        lo = 0.0
    step = 1.0 if integral else 10.0 ** (math.floor(math.log10(hi - lo)) - 2)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return {"min": _tidy(lo), "max": _tidy(hi)}


def _tidy(value: float) -> float | int:
    value = float(f"{value:.6g}")
    return int(value) if value == int(value) and abs(value) < 1e15 else value


# --- the reference snapshot ------------------------------------------------------------------


def write_reference(path: Path, rows: int) -> Path:
    """A seeded sample of the file's own lines (bytes unchanged) as `<name>.reference.csv`.

    One record per line holds: `read_csv` refuses quoted newlines."""
    import numpy as np

    target = path.with_name(f"{path.stem}.reference{path.suffix or '.csv'}")
    with path.open("rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    header, body = lines[0], [line for line in lines[1:] if line.strip()]
    keep = min(len(body), REFERENCE_MAX_ROWS, max(1, math.ceil(REFERENCE_SHARE * len(body))))
    chosen = np.sort(np.random.default_rng(SEED).choice(len(body), size=keep, replace=False))
    content = header + b"".join(body[i] if body[i].endswith(b"\n") else body[i] + b"\n" for i in chosen)
    from pipeline.files import write_text

    write_text(target, content.decode("utf-8"))
    return target


# --- the baseline and the gates --------------------------------------------------------------


def measure(draft: Draft, data: Path, root: Path) -> None:
    """Cross-validate the model the config names and a dummy predictor; set gates and slices."""
    import numpy as np

    from pipeline.data import read_table

    config = _config(draft, root)
    full = read_table(data, config)
    held_out = _split_score(config, full)
    frame = full.dropna(subset=[draft.target]).reset_index(drop=True)
    if len(frame) > CV_MAX_ROWS:
        frame = frame.sample(CV_MAX_ROWS, random_state=SEED).reset_index(drop=True)
    folds = _cross_validate(config, frame)
    metric_names = [m for m, _ in GATES[draft.task] if all(m in f for f in folds)]
    summary = {m: (float(np.mean([f[m] for f in folds])), float(np.std([f[m] for f in folds]))) for m in metric_names}
    dummy = _dummy(config, frame)
    draft.baseline = {"folds": len(folds), "rows": len(frame), "cv": summary, "dummy": dummy, "split": held_out}
    for metric, direction in GATES[draft.task]:
        if metric in summary:
            draft.gates.append((metric, *_threshold(direction, summary[metric], held_out.get(metric), dummy.get(metric))))
    _slices(draft, config, frame, summary, held_out)
    first = next(m for m in ("roc_auc", "accuracy", "rmse") if m in summary)
    mean, sd = summary[first]
    tolerance = _tidy(float(f"{max(0.02 * (1 if first != 'rmse' else mean), 2 * sd):.3g}"))
    draft.champion = (first, "lower" if first == "rmse" else "higher", tolerance,
                      f"2 CV sd ({sd:.3g}){'' if first == 'rmse' else ', at least 0.02'}")
    features = [c.name for c in draft.columns if c.name in config.feature_columns]
    complete = frame[features].dropna()
    row = complete.index[0] if len(complete) else frame.index[0]
    draft.example = {k: _plain(v) for k, v in frame.loc[row, features].items()}
    draft.example_answer = _plain(frame.loc[row, draft.target])


def _config(draft: Draft, root: Path) -> Config:
    """The typed config of the draft (no gates yet), to read and fit exactly as `mlops run` will."""
    from pipeline.config import Config

    return Config.model_validate({**_raw(draft), "root": root})


def _raw(draft: Draft) -> dict[str, Any]:
    data: dict[str, Any] = {"path": draft.paths[0], "reference": draft.paths[1], "target": draft.target}
    if draft.id_column:
        data["id_column"] = draft.id_column
    if draft.positive_class is not None:
        data["positive_class"] = draft.positive_class
    return {
        "project": _slug(draft), "task": draft.task, "seed": SEED, "data": data,
        "validate": {"columns": {c.name: {"type": c.type, **c.spec} for c in draft.columns}},
        "train": {"estimator": ESTIMATOR, "params": PARAMS},
    }


def _cross_validate(config: Config, frame: pd.DataFrame) -> list[dict[str, float]]:
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    from pipeline.metrics import score
    from pipeline.train import features_and_target, new_model

    x, y = features_and_target(config, frame)
    repeats = CV_REPEATS if len(frame) <= REPEAT_MAX_ROWS else 1
    if config.task == "classification" and y.value_counts().min() >= CV_FOLDS:
        splitter: Any = RepeatedStratifiedKFold(n_splits=CV_FOLDS, n_repeats=repeats, random_state=SEED)
    else:
        splitter = RepeatedKFold(n_splits=CV_FOLDS, n_repeats=repeats, random_state=SEED)
    folds = []
    for train, test in splitter.split(x, y):
        model = new_model(config)
        try:
            model.fit(x.iloc[train], y.iloc[train])
        except ValueError as exc:
            raise PipelineError(f"init: the baseline fit failed: {clip(str(exc), 300)}") from None
        folds.append(score(config.task, model, x.iloc[test], y.iloc[test], config.positive_class))
    return folds


def _split_score(config: Config, frame: pd.DataFrame) -> dict[str, float]:
    """The model's score on the very train/test split `mlops run` uses (same seed and test_size)."""
    from pipeline.train import train

    return train(config, frame).metrics


def _dummy(config: Config, frame: pd.DataFrame) -> dict[str, float]:
    """What predicting the majority class (or the mean) scores on the whole file."""
    import numpy as np

    y = frame[config.data.target]
    if config.task == "classification":
        shares = y.astype(str).value_counts(normalize=True)
        return {"accuracy": float(shares.iloc[0]), "balanced_accuracy": 1 / len(shares), "roc_auc": 0.5}
    values = y.astype("float64").to_numpy()
    return {"r2": 0.0, "rmse": float(np.std(values)), "mae": float(np.mean(np.abs(values - np.mean(values))))}


def _threshold(direction: str, cv: tuple[float, float], split: float | None,
               dummy: float | None) -> tuple[float, str, str]:
    """A gate the measured model clears with room for noise, and that a dummy predictor fails.

    Anchored on the worse of the CV mean and the score on mlops run's own test split, then moved
    3 CV sd (at least 0.05, or 10% for an error metric) to the safe side; where that would let the
    dummy pass, halfway between the anchor and the dummy instead."""
    mean, sd = cv
    higher = direction == "higher"
    anchor = mean if split is None else (min(mean, split) if higher else max(mean, split))
    seen = f"CV {mean:.4g} ± {sd:.3g}" + ("" if split is None else f", test split {split:.4g}")
    if higher:
        value, why = anchor - max(0.05, 3 * sd), f"{seen}: the lower minus max(0.05, 3 sd)"
    else:
        value, why = anchor + max(0.10 * anchor, 3 * sd), f"{seen}: the higher plus max(10%, 3 sd)"
    if dummy is not None and (value < dummy if higher else value > dummy):
        value, why = (anchor + dummy) / 2, f"{seen}: halfway from the worse to the dummy"
    value = math.floor(value * 1000) / 1000 if higher else math.ceil(float(f"{value:.4g}") * 1000) / 1000
    return _tidy(value), direction, why + ("" if dummy is None else f"; dummy {dummy:.4g}")


def _slices(draft: Draft, config: Config, frame: pd.DataFrame, summary: dict[str, tuple[float, float]],
            held_out: dict[str, float]) -> None:
    """Per-group floors on the low-cardinality categorical features, with a wide margin: groups
    of a test split are small, so their scores are noisy."""
    test_rows = math.ceil(0.25 * len(frame))
    candidates = [c for c in draft.columns
                  if c.name in config.feature_columns and c.type == "category" and 2 <= c.groups <= SLICE_MAX_GROUPS
                  and test_rows / c.groups >= 20]
    for column in candidates[:SLICE_COLUMNS]:
        if draft.task == "classification":
            worst = min(summary["accuracy"][0], held_out.get("accuracy", 1.0))
            draft.slices.append((column.name, "accuracy", "min", _tidy(math.floor(max(0.0, worst - 0.15) * 100) / 100),
                                 f"the worse overall accuracy (CV or test split) {worst:.3f} minus 0.15"))
        else:
            worst = max(summary["mae"][0], held_out.get("mae", 0.0))
            draft.slices.append((column.name, "mae", "max", _tidy(float(f"{2 * worst:.3g}")),
                                 f"2x the worse overall mae (CV or test split) {worst:.4g}"))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    return round(value, 4) if isinstance(value, float) else value


# --- the YAML text ---------------------------------------------------------------------------


def _slug(draft: Draft) -> str:
    stem = Path(draft.source).stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{stem}-{draft.target}").strip("-.") or "model"
    return name[:60]


def _y(value: Any) -> str:
    """One YAML flow scalar or sequence, quoted when YAML would misread it ("yes", "1.0", ...)."""
    import yaml

    return str(yaml.safe_dump([value], default_flow_style=True, width=10**9, allow_unicode=True).strip()[1:-1])


def _flow(spec: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{key}: {_y(value)}" for key, value in spec.items()) + "}"


def render(draft: Draft) -> str:
    """The config text: the same sections, order and FORK: markers as the bundled mlops.yaml."""
    b = draft.baseline
    slug = _slug(draft)
    width = max(len(_y(c.name)) for c in draft.columns) + 1
    lines = [
        f"# mlops.yaml: written by `mlops init` from {draft.source} ({draft.rows} rows, {len(draft.columns)} columns).",
        "# A first draft inferred from the data: review each FORK: spot (grep -n \"FORK:\" mlops.yaml), then `mlops run`.",
        "",
        f"project: {_y(slug)}  # FORK: names the MLflow experiment and the registered model",
        f"task: {draft.task}  # FORK: classification | regression",
        f"seed: {SEED}",
        "",
        "data:",
        f"  path: {_y(draft.paths[0])}  # FORK: the labelled data",
        f"  reference: {_y(draft.paths[1])}  # a seeded {REFERENCE_SHARE:.0%} sample of the data (at most "
        f"{REFERENCE_MAX_ROWS} rows): drift is measured against it",
        f"  target: {_y(draft.target)}  # FORK: the column to predict",
    ]
    if draft.id_column:
        lines.append(f"  id_column: {_y(draft.id_column)}  # FORK: a unique row key (never a feature)")
    if draft.positive_class is not None:
        lines.append(f"  positive_class: {_y(draft.positive_class)}  # FORK: scored by roc_auc and the behaviour tests "
                     "(the rarest class)")
    lines += [
        "  test_size: 0.25",
        "",
        "validate:  # the data contract, inferred from the file",
        f"  min_rows: {max(1, draft.rows // 2)}  # half the rows the file has",
        "  extra_columns: fail",
        "  max_duplicate_rate: 0.0",
        f"  # int: every value a whole number (59.0 counts); min/max: observed, widened by {RANGE_MARGIN:.0%} of the span",
        f"  # each side (never below 0 when the data is not); category: text with at most {CATEGORY_CAP} distinct values.",
        "  columns:  # FORK: one entry per column",
    ]
    for column in draft.columns:
        key = f"{_y(column.name)}:".ljust(width + 1)
        note = f"  # {'; '.join(column.notes)}" if column.notes else ""
        lines.append(f"    {key} {_flow({'type': column.type, **column.spec})}{note}")
    lines += [
        "  drift:",
        "    psi_threshold: 0.2",
        "    p_value: 0.01",
        "    on_drift: warn",
        "",
        "train:",
        f"  estimator: {ESTIMATOR}  # FORK: a name from model/estimator.py (ESTIMATORS)",
        "  params:  # FORK: passed to the estimator",
        *[f"    {k}: {_y(v)}" for k, v in PARAMS.items()],
        "",
        "evaluate:",
        f"  # Baseline measured by `mlops init`: {CV_FOLDS}-fold cross-validation x {b['folds'] // CV_FOLDS} "
        f"({b['folds']} fits, seed {SEED}) of the",
        f"  # estimator above on {b['rows']} rows: each fold tests on 25% of the rows like the test split, so",
        "  # 'CV mean ± sd' is the test score and its spread; 'test split': one fit on mlops run's own split.",
        "  # Dummy: the majority class, or the mean. Each gate sits 3 sd (at least a floor) on the safe side",
        "  # of the worse of the two scores and, where possible, beyond the dummy.",
        "  gates:  # FORK: quality gates as data",
        *[f"    - {_flow({'metric': m, 'threshold': t, 'direction': d})}  # {why}" for m, t, d, why in draft.gates],
    ]
    if draft.slices:
        lines.append(f"  slices:  # FORK: categorical features with 2-{SLICE_MAX_GROUPS} groups; per-group bound, wide for "
                     "small groups")
        lines += [f"    - {_flow({'column': c, 'metric': m, bound: v})}  # {why}" for c, m, bound, v, why in draft.slices]
    else:
        lines.append(f"  slices: []  # FORK: no categorical feature with 2-{SLICE_MAX_GROUPS} groups of ~20+ test rows each")
    metric, direction, tolerance, why = draft.champion
    lines += [
        "  champion:",
        f"    metric: {metric}  # FORK: challenger vs champion on the same evaluation data",
        f"    direction: {direction}",
        f"    tolerance: {_y(tolerance)}  # {why}",
        "    path: .mlops/champion",
        "  behaviour: {}  # FORK: behavioural tests in your columns' terms; to adapt (the row is from the data):",
        *_behaviour_examples(draft),
        "",
        "promote:",
        f"  registered_model: {_y(slug)}  # FORK: the MLflow registered model name",
        "",
    ]
    return "\n".join(lines)


def _behaviour_examples(draft: Draft) -> list[str]:
    columns = {c.name: c for c in draft.columns}
    categorical = next((c for c in draft.columns if c.name in draft.example and c.type == "category"), None)
    numeric = next((c for c in draft.columns if c.name in draft.example and c.type in ("int", "float")), None)
    lines = []
    if categorical:
        values = _y(columns[categorical.name].spec.get("allowed", [])[:3])
        lines.append(f"    # invariance: [{{name: {categorical.name} does not decide it, column: {_y(categorical.name)}, "
                     f"values: {values}, max_change: 0.25}}]")
    if numeric:
        lines.append(f"    # directional: [{{name: more {numeric.name} raises it, column: {_y(numeric.name)}, delta: 1, "
                     "expect: increase, min_rate: 0.8}]")
    lines += ["    # minimum:", "    #   - name: a known case", f"    #     row: {_flow(draft.example)}",
              f"    #     expect: {_y(draft.example_answer)}  # its label in the data"]
    if draft.task == "regression":
        lines.append(f"    #     tolerance: {_y(draft.champion[2] * 3)}")
    return lines


def _check(text: str, out: Path) -> None:
    """The written text must load as the config it describes (a bug here must not reach the user)."""
    import yaml

    from pipeline.config import Config

    raw = yaml.safe_load(text)
    Config.model_validate({**raw, "root": out.resolve().parent})


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())
