"""The data contract, leakage and drift checks behind `mlops validate`, as one pure function.

`validate` takes frames, not files (the CLI layer in `pipeline.steps` reads them with
`pipeline.data.read_table`), collects EVERY problem instead of stopping at the first, and returns
a JSON-serialisable report (`pipeline.steps.validate` prints one line per problem).

What runs where, and why:
- pandera (`contract_schema`) checks nullability, ranges, allowed categories and uniqueness,
  lazily, so all failures come back at once; its failure cases become problem dicts.
- Types are coerced first, vectorised in pandas: pandera's own coercion reports a bad value three
  times (coerce, dtype, then a TypeError from every range check), we want it once.
- Column presence, null *rates*, duplicate rows, row counts, target classes, leakage and drift are
  whole-table facts pandera has no check for; they are a few vectorised pandas lines each.
Row numbers in messages are file lines (header = line 1), see `pipeline.data.line_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.data import PANDAS_DTYPES, coerce, line_of, split_indices
from pipeline.errors import PipelineError, clip

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pandera.pandas as pandera

    from pipeline.config import ColumnSpec, Config

Problem = dict[str, Any]
# pandera keeps this many failing values per range/allowed check (the first, in row order); the
# totals are counted in pandas. Without the cap pandera formats every failing value into a
# message: 1M out-of-range values cost ~4 s of string joins.
FAILURE_CASES_KEPT = 100
# Rows scanned to rule out a 1:1 feature/target mapping cheaply before the full check.
MAPPING_PREFILTER_ROWS = 10_000


class _Collector:
    """Problems and warnings in the report's shape, plus the list of checks that ran."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.checks_run: list[str] = []

    def ran(self, check: str) -> None:
        if check not in self.checks_run:
            self.checks_run.append(check)

    def add(self, check: str, column: str | None, expected: str, observed: str, *, fail: bool = True,
            line: int | None = None) -> None:
        # values are clipped where they are quoted; this bounds the whole message once more
        item = {"check": check, "column": None if column is None else clip(column), "expected": clip(expected, 400),
                "observed": clip(observed, 400), "line": line}
        (self.problems if fail else self.warnings).append(item)


def validate(config: Config, data: pd.DataFrame, reference: pd.DataFrame | None, *, source: str) -> dict[str, Any]:
    """Check `data` against the contract in `config.validate`, for leakage, and for drift.

    Args:
        config: the typed mlops.yaml.
        data: the table to check, as read by `read_table` (row i is file line i + 2).
        reference: the snapshot drift is measured against, or None to skip drift.
        source: where `data` came from, recorded in the report.
    Returns:
        {"passed", "rows", "source", "row_numbers", "problems", "warnings", "leakage", "drift",
        "checks_run"}; each problem/warning is {"check", "column", "expected", "observed"}.
    """
    out = _Collector()
    df = _positional(data)
    leakage: dict[str, Any] = {"skipped": "no declared column in the data"}
    drift: dict[str, Any] = {"skipped": "no declared column in the data"}
    if _check_columns(config, df, out):
        _check_min_rows(config, df, out)
        df, bad_types = _check_types(config, df, out)
        _check_schema(config, df, bad_types, out)
        _check_null_rates(config, _positional(data), out)
        hashes = _RowHashes(df)
        _check_duplicates(config, df, hashes, out)
        _check_target(config, df, out)
        leakage = _check_leakage(config, df, hashes, out)
        drift = _check_drift(config, df, reference, out)
    return {
        "passed": not out.problems,
        "rows": len(df),
        "source": source,
        "row_numbers": "file lines: the header is line 1, the first data row line 2",
        "problems": out.problems,
        "warnings": out.warnings,
        "leakage": leakage,
        "drift": drift,
        "checks_run": out.checks_run,
    }


def _positional(data: pd.DataFrame) -> pd.DataFrame:
    """The frame indexed 0..n-1, so an index label is a row position (and a file line)."""
    import pandas as pd

    index = data.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return data
    return data.reset_index(drop=True)


def allowed_null_rate(spec: ColumnSpec) -> float:
    """The share of nulls a column may hold.

    `max_null_rate` when set; otherwise 1.0 for `nullable: true` (nulls allowed, no limit) and 0.0
    for `nullable: false`. Setting `max_null_rate` implies nulls are allowed up to that share.
    """
    if "max_null_rate" in spec.model_fields_set:
        return spec.max_null_rate
    return 1.0 if spec.nullable else 0.0


def contract_schema(config: Config, columns: list[str] | None = None) -> pandera.DataFrameSchema:
    """The pandera schema of the declared columns (all, or those in `columns`).

    Type coercion is not part of it (see module docstring); null *rates* are not either.
    """
    import pandera.pandas as pandera

    specs = config.validate_.columns
    fields = {}
    for name, spec in specs.items():
        if columns is not None and name not in columns:
            continue
        checks = []
        if spec.type in ("int", "float"):
            if spec.min is not None and spec.max is not None:
                checks.append(pandera.Check.in_range(spec.min, spec.max, n_failure_cases=FAILURE_CASES_KEPT))
            elif spec.min is not None:
                checks.append(pandera.Check.ge(spec.min, n_failure_cases=FAILURE_CASES_KEPT))
            elif spec.max is not None:
                checks.append(pandera.Check.le(spec.max, n_failure_cases=FAILURE_CASES_KEPT))
        if spec.allowed is not None and spec.type in ("string", "category"):
            checks.append(pandera.Check.isin(spec.allowed, n_failure_cases=FAILURE_CASES_KEPT))
        fields[name] = pandera.Column(
            PANDAS_DTYPES[spec.type], checks, nullable=allowed_null_rate(spec) > 0, unique=spec.unique
        )
    return pandera.DataFrameSchema(fields, strict=False)


# --- structure -----------------------------------------------------------------------------


def _check_columns(config: Config, df: pd.DataFrame, out: _Collector) -> bool:
    """Missing and undeclared columns; False when no declared column is there at all.

    That last case is one problem, not one per column: it is the wrong file (or not a CSV).
    """
    out.ran("columns")
    declared = config.validate_.columns
    if not any(name in df.columns for name in declared):
        names = list(declared)
        header = ", ".join(repr(str(c))[:40] for c in list(df.columns)[:3]) + (", ..." if len(df.columns) > 3 else "")
        wanted = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        out.add("columns", None, f"a header with the declared columns ({wanted})",
                f"none of them (header: {header}): is this the right file, and a comma-separated CSV?")
        return False
    for name in declared:
        if name not in df.columns and name != config.data.target:
            out.add("missing_column", name, "column declared in validate.columns", "not in the data")
    fail = config.validate_.extra_columns == "fail"
    for name in df.columns:
        if name not in declared:
            out.add(
                "extra_column", str(name), "only columns declared in validate.columns",
                f"undeclared column (validate.extra_columns: {config.validate_.extra_columns})", fail=fail,
            )
    return True


def _check_min_rows(config: Config, df: pd.DataFrame, out: _Collector) -> None:
    out.ran("min_rows")
    if len(df) < config.validate_.min_rows:
        out.add("min_rows", None, f"at least {config.validate_.min_rows} rows", f"{len(df)} rows")


# --- types ---------------------------------------------------------------------------------


def _check_types(config: Config, df: pd.DataFrame, out: _Collector) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Coerce each declared column to its contract dtype; report values that do not fit, once."""
    import numpy as np

    out.ran("type")
    coerced: dict[str, pd.Series] = {}
    bad_rows: dict[str, np.ndarray] = {}
    for name, spec in config.validate_.columns.items():
        if name not in df.columns:
            continue
        series, bad = coerce(df[name], spec.type)
        if series is not df[name]:
            coerced[name] = series
        if bad is not None and bad.any():
            positions = np.flatnonzero(bad)
            bad_rows[name] = positions
            first = int(positions[0])
            kind = "finite float" if spec.type == "float" and _non_finite(df[name].iloc[first]) else spec.type
            out.add(
                "type", name, f"{kind} values",
                f"{_rows(len(positions))} not {kind} (first: line {line_of(first)} = {_show(df[name].iloc[first])})",
                line=line_of(first),
            )
    if coerced:
        df = df.assign(**coerced)
    return df, bad_rows


# --- pandera contract ----------------------------------------------------------------------

_CHECK_NAMES = {"in_range": "range", "greater_than_or_equal_to": "range", "less_than_or_equal_to": "range",
                "isin": "allowed", "not_nullable": "nullable", "field_uniqueness": "unique"}


def _check_schema(config: Config, df: pd.DataFrame, bad_types: dict[str, np.ndarray], out: _Collector) -> None:
    import pandera.pandas as pandera

    for check in ("nullable", "range", "allowed", "unique"):
        out.ran(check)
    schema = contract_schema(config, columns=[c for c in df.columns if c in config.validate_.columns])
    try:
        schema.validate(df, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        _translate(config, df, exc.failure_cases, bad_types, out)


def _translate(config: Config, df: pd.DataFrame, cases: pd.DataFrame, bad_types: dict[str, np.ndarray], out: _Collector) -> None:
    """pandera's failure cases (one row per failing value) -> one problem per column and check."""
    import pandas as pd

    cases = cases[cases["column"].notna()]
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        name = _CHECK_NAMES.get(str(check).split("(")[0], str(check))
        spec = config.validate_.columns[str(column)]
        index = pd.to_numeric(group["index"], errors="coerce")
        if str(column) in bad_types:  # already reported once as a type problem
            keep = ~index.isin(bad_types[str(column)])
            group, index = group[keep.to_numpy()], index[keep]
        if group.empty:
            continue
        rows = index.dropna()
        if rows.empty:  # a whole-column failure, e.g. a check that could not run
            out.add(name, str(column), _expected(name, spec, str(check)), clip(str(group["failure_case"].iloc[0])))
            continue
        first = rows.idxmin()
        value = group["failure_case"].loc[first]
        failing = _failing(name, df[str(column)], spec)
        count = len(rows) if failing is None else int(failing.sum())
        observed = f"{_rows(count)} {_what(name)} (first: line {line_of(int(rows.loc[first]))}{_value(name, value)})"
        if name == "allowed" and failing is not None:
            unseen = sorted(clip(str(v), 40) for v in df[str(column)][failing].unique()[:20])
            observed += f"; unseen: {', '.join(unseen[:5])}" + (" ..." if len(unseen) > 5 else "")
        out.add(name, str(column), _expected(name, spec, str(check)), observed, line=line_of(int(rows.loc[first])))


def _failing(name: str, series: pd.Series, spec: ColumnSpec) -> pd.Series | None:
    """All failing rows of a range/allowed check (pandera keeps only the first few), else None."""
    if name == "range":
        import pandas as pd

        unbounded = pd.Series(False, index=series.index)
        low = series < spec.min if spec.min is not None else unbounded
        high = series > spec.max if spec.max is not None else unbounded
        return (low | high).fillna(False).astype(bool)
    if name == "allowed":
        return series.notna() & ~series.isin(spec.allowed or [])
    return None


def _expected(name: str, spec: ColumnSpec, raw: str) -> str:
    if name == "range":
        low = "-inf" if spec.min is None else f"{spec.min:g}"
        high = "inf" if spec.max is None else f"{spec.max:g}"
        return f"values in [{low}, {high}]"
    if name == "allowed":
        return f"one of [{', '.join(spec.allowed or [])}]"
    if name == "nullable":
        return "no nulls (nullable: false)"
    if name == "unique":
        return "unique values"
    return raw


def _what(name: str) -> str:
    return {"range": "outside", "allowed": "with unseen values", "nullable": "null",
            "unique": "sharing a value"}.get(name, "failing")


def _value(name: str, value: Any) -> str:
    return "" if name == "nullable" else f" = {_show(value)}"


def _show(value: Any) -> str:
    """A value as a person would type it: strings quoted, numpy scalars as plain numbers."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    return clip(repr(value) if isinstance(value, str) else str(value))


def _non_finite(value: Any) -> bool:
    """inf, -inf or nan, as a number or as text: a float column refuses them."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number != number or number in (float("inf"), float("-inf"))


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


# --- whole-table facts ---------------------------------------------------------------------


def _check_null_rates(config: Config, df: pd.DataFrame, out: _Collector) -> None:
    """Null share per nullable column (pandera reports each null of a non-nullable column)."""
    out.ran("max_null_rate")
    if len(df) == 0:
        return
    for name, spec in config.validate_.columns.items():
        limit = allowed_null_rate(spec)
        if name not in df.columns or limit <= 0 or limit >= 1:
            continue
        nulls = df[name].isna()
        rate = float(nulls.mean())
        if rate > limit:
            first = int(nulls.to_numpy().argmax())
            out.add("max_null_rate", name, f"at most {limit:.1%} nulls",
                    f"{rate:.1%} ({int(nulls.sum())} of {len(df)} rows; first: line {line_of(first)})", line=line_of(first))


class _RowHashes:
    """64-bit row hashes over any subset of columns, hashing each column once.

    Duplicate rows (all columns but the id) and train/test overlap (the features) share most
    columns; hashing is most of their cost at 1M rows, so column hashes are kept and combined.
    """

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.columns: dict[str, np.ndarray] = {}

    def of(self, columns: list[str]) -> np.ndarray:
        import numpy as np
        import pandas as pd

        combined = np.full(len(self.df), 0x345678, dtype=np.uint64)
        for position, name in enumerate(columns):
            if name not in self.columns:
                self.columns[name] = pd.util.hash_pandas_object(self.df[name], index=False).to_numpy()
            combined ^= self.columns[name]
            combined *= np.uint64(1_000_003 + 2 * position)
        return combined


def _check_duplicates(config: Config, df: pd.DataFrame, hashes: _RowHashes, out: _Collector) -> None:
    import pandas as pd

    out.ran("duplicates")
    columns = [c for c in df.columns if c != config.data.id_column]
    if len(df) == 0 or not columns:
        return
    rows = hashes.of(columns)
    repeated = pd.Series(rows).duplicated().to_numpy()
    count = int(repeated.sum())
    rate = count / len(df)
    limit = config.validate_.max_duplicate_rate
    if rate > limit:
        first = int(repeated.argmax())
        original = int((rows == rows[first]).argmax())
        ignoring = f" (ignoring {config.data.id_column!r})" if config.data.id_column in df.columns else ""
        out.add("duplicates", None, f"at most {limit:.1%} duplicate rows{ignoring}",
                f"{_rows(count)} ({rate:.1%}) repeat an earlier row (first: line {line_of(first)} = line {line_of(original)})",
                line=line_of(first))


def _check_target(config: Config, df: pd.DataFrame, out: _Collector) -> None:
    out.ran("target")
    target = config.data.target
    if target not in df.columns:
        out.add("target", target, f"target column {target!r} (data.target) present", "column missing")
        return
    if config.task == "classification":
        out.ran("classes")
        classes = df[target].dropna().unique()
        if len(classes) < 2:
            seen = ", ".join(clip(str(c), 40) for c in classes[:10]) or "none"
            out.add("classes", target, "at least 2 classes in the target",
                    f"{len(classes)} {'class' if len(classes) == 1 else 'classes'} ({seen})")


# --- leakage -------------------------------------------------------------------------------


def _check_leakage(config: Config, df: pd.DataFrame, hashes: _RowHashes, out: _Collector) -> dict[str, Any]:
    """Train/test overlap on the split `train` will use, shared ids, and target copies."""
    out.ran("leakage")
    features = [c for c in config.feature_columns if c in df.columns]
    result: dict[str, Any] = {"target_copies": _target_copies(config, df, features, out)}
    try:
        train, test = split_indices(config, df)
    except PipelineError as exc:
        result["split"] = f"skipped: {exc}"
        return result
    result["split"] = {"train_rows": len(train), "test_rows": len(test), "seed": config.seed}
    if features:
        result["train_test_overlap"] = _overlap(config, hashes.of(features), train, test, out)
    id_column = config.data.id_column
    already = any(p["check"] == "unique" and p["column"] == id_column for p in out.problems)
    if id_column and id_column in df.columns and not already:  # a repeated unique id is reported once
        shared = df[id_column].iloc[test].dropna().isin(df[id_column].iloc[train].dropna())
        result["shared_ids"] = int(shared.sum())
        if shared.any():
            example = df[id_column].iloc[test][shared.to_numpy()].iloc[0]
            out.add("leakage.id_overlap", id_column, "no id in both train and test",
                    f"{int(shared.sum())} test ids also in train (first: {_show(example)})")
    return result


def _overlap(config: Config, hashes: np.ndarray, train: np.ndarray, test: np.ndarray, out: _Collector) -> int:
    """Test rows whose features equal a train row: over max_duplicate_rate fails, else warns."""
    import pandas as pd

    shared = pd.Series(hashes[test]).isin(hashes[train]).to_numpy()
    count = int(shared.sum())
    if count:
        rate = count / len(test)
        limit = config.validate_.max_duplicate_rate
        first = int(test[shared.argmax()])
        match = int(train[(hashes[train] == hashes[first]).argmax()])
        out.add("leakage.train_test_overlap", None,
                f"no test row whose features equal a train row (tolerated up to max_duplicate_rate {limit:.1%})",
                f"{_rows(count)} of the test split ({rate:.1%}) (first: line {line_of(first)} = train line {line_of(match)})",
                fail=rate > limit, line=line_of(first))
    return count


def _target_copies(config: Config, df: pd.DataFrame, features: list[str], out: _Collector) -> list[str]:
    """Features identical to, or a 1:1 relabelling of, the target: the model would learn nothing else."""
    import numpy as np
    import pandas as pd

    target = config.data.target
    if target not in df.columns or len(df) == 0:
        return []
    copies = []
    y = df[target]
    if config.task == "classification":
        y_codes, y_uniques = pd.factorize(y)
        n_classes = len(y_uniques)
        for name in features:
            x = df[name]
            if n_classes < 2 or x.iloc[:MAPPING_PREFILTER_ROWS].nunique(dropna=False) > n_classes:
                continue
            x_codes, x_uniques = pd.factorize(x)
            pairs = len(np.unique(x_codes.astype(np.int64) * (n_classes + 1) + y_codes))
            if len(x_uniques) == n_classes and pairs == n_classes:
                copies.append(name)
    else:
        y_values = pd.to_numeric(y, errors="coerce").to_numpy(float)
        for name in features:
            if config.validate_.columns[name].type not in ("int", "float"):
                continue
            x_values = pd.to_numeric(df[name], errors="coerce").to_numpy(float)
            both = ~(np.isnan(x_values) | np.isnan(y_values))
            if both.sum() < 2 or np.std(x_values[both]) == 0 or np.std(y_values[both]) == 0:
                continue
            if abs(np.corrcoef(x_values[both], y_values[both])[0, 1]) > 1 - 1e-9:
                copies.append(name)
    for name in copies:
        out.add("leakage.target_copy", name, f"a feature that does not determine {target!r} one-to-one",
                f"values map 1:1 onto the target {target!r} (a copy or relabelling of it)")
    return copies


# --- drift ---------------------------------------------------------------------------------


def _check_drift(config: Config, df: pd.DataFrame, reference: pd.DataFrame | None, out: _Collector) -> dict[str, Any]:
    from pipeline.drift import drift_report

    if reference is None:
        return {"skipped": "no reference data"}
    out.ran("drift")
    report = drift_report(config, df, reference)
    fail = config.validate_.drift.on_drift == "fail"
    for name in report["drifted"]:
        item = report["features"][name]
        out.add("drift", name,
                f"psi <= {config.validate_.drift.psi_threshold} or {item['test']} p >= {config.validate_.drift.p_value} "
                f"(validate.drift.on_drift: {config.validate_.drift.on_drift})",
                f"psi {item['psi']}, {item['test']} p={item['p_value']}", fail=fail)
    return report
