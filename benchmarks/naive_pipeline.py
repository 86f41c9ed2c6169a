"""The baseline `benchmarks/pipeline.py` compares `mlops run` with: one naive script.

What a data scientist would write without the template, on the same mlops.yaml and data:
read the CSV with pandas, check it with an inline pandera schema (the same column checks as the
contract: types, nullability, ranges, allowed values, uniqueness, minimum rows, two classes),
split the same rows (same seed, test size, stratification, row order), fit the same scikit-learn pipeline
(`model.build_model`), score the same metrics, and log to MLflow with MLflow's DEFAULTS: no
tracking URI set (so `sqlite:///mlflow.db` in the working directory), `log_model` with an
input example and no pip requirements (MLflow infers them), default serialization (skops, with
the trusted types pasted from MLflow's error message: without them it refuses a forest). No drift,
leakage, behavioural tests, slices, report, registry or cache: it does less than `mlops run`.

`--bare` keeps only the compute (read, split, fit, predict the test split, metrics): the
reference the scale benchmark holds the pipeline against.

Run it from the folder MLflow should write into, with the repo's packages importable:
    cd "$(mktemp -d)" && python -P /path/to/benchmarks/naive_pipeline.py --config /path/to/mlops.yaml
It prints one JSON line of phase timings on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# MLflow 3.17 saves scikit-learn models with skops by default and refuses a tree model unless its
# types are listed as trusted; its error message names them. A naive script pastes that list.
SKOPS_TRUSTED = ["numpy.dtype", "sklearn.tree._tree.Tree"]
PANDAS_DTYPES = {"float": "float64", "int": "Int64", "bool": "boolean", "string": "str", "category": "str"}


def _forget_script_dir() -> None:
    """`benchmarks/pipeline.py` would shadow the `pipeline` package when run as a script."""
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != HERE]


def validate(config: Any, frame: Any) -> Any:
    """The contract's column checks as one inline pandera schema; raises on the first report."""
    import pandera.pandas as pa

    fields = {}
    for name, spec in config.validate.columns.items():
        checks = []
        if spec.min is not None and spec.max is not None:
            checks.append(pa.Check.in_range(spec.min, spec.max))
        elif spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        elif spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.allowed is not None:
            checks.append(pa.Check.isin(spec.allowed))
        nullable = spec.nullable or spec.max_null_rate > 0
        fields[name] = pa.Column(PANDAS_DTYPES[spec.type], checks, nullable=nullable, unique=spec.unique, coerce=True)
    schema = pa.DataFrameSchema(fields, strict=config.validate.extra_columns == "fail")
    frame = schema.validate(frame, lazy=True)
    if len(frame) < config.validate.min_rows:
        raise SystemExit(f"fewer than {config.validate.min_rows} rows")
    for name, spec in config.validate.columns.items():
        if 0 < spec.max_null_rate < 1 and frame[name].isna().mean() > spec.max_null_rate:
            raise SystemExit(f"{name}: too many nulls")
    if config.task == "classification" and frame[config.data.target].nunique() < 2:
        raise SystemExit("target has fewer than two classes")
    return frame


def metrics(config: Any, model: Any, x: Any, y: Any) -> dict[str, float]:
    """The classification metrics `mlops train` reports (regression: rmse, mae, r2)."""
    import numpy as np
    from sklearn import metrics as skm

    predicted = model.predict(x)
    if config.task == "regression":
        return {"rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))), "mae": float(skm.mean_absolute_error(y, predicted)),
                "r2": float(skm.r2_score(y, predicted))}
    proba = model.predict_proba(x)
    positive = str(config.positive_class)
    classes = [str(c) for c in model.classes_]
    binary = dict(average="binary", pos_label=positive) if len(classes) == 2 else dict(average="macro")
    out = {
        "accuracy": skm.accuracy_score(y, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted, zero_division=0, **binary),
        "recall": skm.recall_score(y, predicted, zero_division=0, **binary),
        "f1": skm.f1_score(y, predicted, zero_division=0, **binary),
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }
    if len(classes) == 2:
        out["roc_auc"] = skm.roc_auc_score(y == positive, proba[:, classes.index(positive)])
    else:
        out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
    return {k: float(v) for k, v in out.items()}


def run(config_path: Path, bare: bool) -> dict[str, float]:
    """The whole naive script; returns seconds per phase."""
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from model import build_model
    from pipeline.config import load_config
    from pipeline.train import model_spec

    config = load_config(config_path)
    data_path = config.data.path if config.data.path.is_absolute() else config.root / config.data.path
    frame = pd.read_csv(data_path)
    phases["import+read"] = time.perf_counter() - t0

    t = time.perf_counter()
    if not bare:
        frame = validate(config, frame)
        phases["validate"] = time.perf_counter() - t

    t = time.perf_counter()
    target = frame[config.data.target]
    if config.task == "classification":
        target = target.astype(str)
    # The same rows in the same order as `mlops train` (seeded, stratified, positions sorted), so
    # both fit the same model: row order alone changes a tree model's fit time.
    stratify = pd.factorize(target, sort=True)[0] if config.task == "classification" else None
    train_rows, test_rows = train_test_split(
        np.arange(len(frame)), test_size=config.data.test_size, random_state=config.seed, stratify=stratify
    )
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    features = frame[config.feature_columns]
    x_train, y_train = features.iloc[train_rows], target.iloc[train_rows]
    x_test, y_test = features.iloc[test_rows], target.iloc[test_rows]
    model = build_model(model_spec(config)).fit(x_train, y_train)
    phases["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    scores = metrics(config, model, x_test, y_test)
    phases["evaluate"] = time.perf_counter() - t

    if not bare:
        t = time.perf_counter()
        import mlflow

        mlflow.set_experiment(config.project)
        with mlflow.start_run():
            mlflow.log_params({"estimator": config.train.estimator, **config.train.params})
            mlflow.log_metrics(scores)
            mlflow.sklearn.log_model(model, name="model", input_example=x_train.head(5), skops_trusted_types=SKOPS_TRUSTED)
        phases["mlflow"] = time.perf_counter() - t
    phases["total"] = time.perf_counter() - t0
    phases["test_rows"] = float(len(x_test))
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mlops.yaml", help="the mlops.yaml whose data, contract and model to use")
    parser.add_argument("--bare", action="store_true", help="compute only: read, fit, predict, metrics")
    args = parser.parse_args(argv)
    _forget_script_dir()
    phases = run(Path(args.config).resolve(), args.bare)
    print(json.dumps({k: round(v, 3) for k, v in phases.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
