"""Reading a table with the contract's types, and the one train/test split every step shares.

`read_table` is strict about the *file* (missing, empty, binary, ragged rows: one clear
PipelineError naming the file and line) and lenient about *values*: a column whose values do not
parse as the declared type is kept as text, so `validate` can report every bad value as a
contract problem instead of stopping at the first one. Reading goes through pyarrow's CSV reader
(multi-threaded, ~1 s for 1M rows x 20 columns), which, unlike pandas' C reader, refuses short
rows instead of silently padding them with nulls.

Types are kept end to end: a declared int/float/bool column that arrow could not read as such
(`59.0` in an int column) is converted by `coerce` when every value fits, so training sees the
contract's dtype, not text. Non-finite numbers (`inf`, `-inf`, `nan` written out) in a float column
are kept as text, so `validate` reports them as values that break the contract.

Row numbers in messages are file lines: the header is line 1, the first data row is line 2
(`line_of`). That assumes one record per line, which holds because quoted newlines are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from pipeline.config import Config

HEADER_LINES = 1
CHUNK_BYTES = 1 << 20
SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}
# pyarrow's default null markers without the NaN spellings: "nan" in a float column is a
# non-finite value the contract refuses, not a missing one.
NULL_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN", "N/A", "NA", "NULL", "n/a", "null"]
PANDAS_DTYPES = {"float": "float64", "int": "Int64", "bool": "boolean", "string": "str", "category": "str"}
_BAD_COLUMN = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


def line_of(position: int) -> int:
    """The file line of the data row at 0-based `position` (the header is line 1)."""
    return position + HEADER_LINES + 1


def read_table(path: Path, config: Config) -> pd.DataFrame:
    """Read a CSV file with the dtypes the contract declares.

    Args:
        path: the CSV file.
        config: its `validate.columns` give each column's type: float -> float64,
            int -> nullable Int64, bool -> nullable boolean, string/category -> pandas string.
    Returns:
        The table with a 0-based RangeIndex (row i is file line `line_of(i)`). A declared column
        whose values do not all parse keeps them as text; `validate` reports them.
    Raises:
        PipelineError: the file is missing, empty, binary, not UTF-8, has no data rows, a
            duplicated header name, or a row with the wrong number of fields.
    """
    kinds = {name: spec.type for name, spec in config.validate_.columns.items()}
    frame = read_csv(path, _arrow_types(config))
    fitting = {}
    for name, kind in kinds.items():
        if name in frame.columns and kind in ("int", "float", "bool") and _is_text(frame[name]):
            series, bad = coerce(frame[name], kind)
            if bad is None or not bad.any():
                fitting[name] = series
    return frame.assign(**fitting) if fitting else frame


def read_csv(path: Path, types: dict[str, pa.DataType] | None = None) -> pd.DataFrame:
    """Read a CSV file with these column types (None: as pyarrow infers them), strictly about the
    file: the same clear errors for `mlops validate`, `mlops init` and every other reader."""
    _check_file(path)
    table = _read_arrow(path, types)
    if table.num_rows == 0:
        raise PipelineError(f"{path}: header only, no data rows")
    _check_header(path, table.column_names)
    return _to_pandas(path, table)


def _is_text(series: pd.Series) -> bool:
    from pandas.api import types

    return types.is_string_dtype(series.dtype) or types.is_object_dtype(series.dtype)


def coerce(series: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray | None]:
    """(the series as the contract dtype, mask of values that could not be converted).

    Non-finite numbers do not fit int or float; a fraction or a magnitude no 64-bit integer
    holds does not fit int.
    """
    import numpy as np
    import pandas as pd
    from pandas.api import types

    target = PANDAS_DTYPES[kind]
    if kind in ("string", "category"):
        return (series if series.dtype == target else series.astype(target)), None
    if kind == "bool":
        if types.is_bool_dtype(series.dtype):
            return (series if series.dtype == target else series.astype(target)), None
        text = series.astype("str").str.strip().str.lower()
        mapped = text.map({"true": True, "1": True, "false": False, "0": False})
        bad = (mapped.isna() & series.notna()).to_numpy()
        return mapped.astype(target), bad
    if types.is_numeric_dtype(series.dtype) and not types.is_bool_dtype(series.dtype):
        numbers = series
        bad = None
    else:
        numbers = pd.to_numeric(series, errors="coerce")
        bad = (numbers.isna() & series.notna()).to_numpy()
    if kind == "int":
        if series.dtype == target:
            return series, None
        values = numbers.astype("float64")
        # a fraction, or a magnitude no 64-bit integer holds, is not an int of the contract
        unfit = (values.notna() & ((values != np.floor(values)) | (values.abs() >= 2.0**63))).to_numpy()
        bad = unfit if bad is None else (bad | unfit)
        return values.where(~unfit).astype(target), bad
    values = numbers if numbers.dtype == target else numbers.astype(target)
    infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        bad = infinite if bad is None else (bad | infinite)
    return values, bad


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise PipelineError(f"{path}: empty file (0 bytes)")
    with path.open("rb") as handle:  # a memchr scan: ~50 ms per 100 MB
        head = handle.read(CHUNK_BYTES)
        chunk = head
        while chunk:
            if b"\x00" in chunk:
                raise PipelineError(f"{path}: binary content (NUL bytes), not a CSV text file")
            chunk = handle.read(CHUNK_BYTES)
    if not head.strip():
        raise PipelineError(f"{path}: only blank lines, no header")


def _arrow_types(config: Config) -> dict[str, pa.DataType]:
    import pyarrow as pa

    mapping = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "string": pa.string(), "category": pa.string()}
    return {name: mapping[spec.type] for name, spec in config.validate_.columns.items()}


def _read_arrow(path: Path, declared: dict[str, pa.DataType] | None) -> pa.Table:
    """Read with the declared types; a column that fails to convert is re-read as text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = declared or {}
    header = _header(path)
    if len(header) == 1:
        for sep, name in SEPARATORS.items():
            if sep in header[0]:
                raise PipelineError(f"{path}: the header is one column containing {sep!r}: "
                                    f"the file looks {name}-separated, expected commas")
    for _ in range(len(types) + 1):
        options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=NULL_VALUES)
        try:
            return pacsv.read_csv(path, convert_options=options)
        except pa.ArrowInvalid as exc:
            message = str(exc)
            match = _BAD_COLUMN.search(message)
            if match and match.group(2) != "string" and int(match.group(1)) < len(header):
                types = {**types, header[int(match.group(1))]: pa.string()}
                continue
            raise PipelineError(_explain_arrow_error(path, message, header)) from None
    raise PipelineError(f"{path}: could not read as CSV")  # pragma: no cover - loop always returns


def _header(path: Path) -> list[str]:
    import csv

    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        return next(csv.reader(handle), [])


def _explain_arrow_error(path: Path, message: str, header: list[str]) -> str:
    if "Expected" in message and "columns, got" in message:
        return _ragged_row(path)
    match = _BAD_COLUMN.search(message)
    if match and "UTF8" in message:
        column = header[int(match.group(1))] if int(match.group(1)) < len(header) else f"#{match.group(1)}"
        return f"{path}: column {column!r}: not UTF-8 text{_first_bad_utf8(path)}"
    if "Empty CSV file" in message:
        return f"{path}: no header line"
    if "newline" in message.lower() or "quote" in message.lower():
        return f"{path}: not a readable CSV (unbalanced quotes or a newline inside a value): {message.splitlines()[0]}"
    return f"{path}: not a readable CSV: {message.splitlines()[0]}"


def _ragged_row(path: Path) -> str:
    """Re-read single-threaded (error path only) to learn the line number of the first bad row."""
    import pyarrow.csv as pacsv

    bad: list[Any] = []  # pyarrow's InvalidRow: expected_columns, actual_columns, number, text

    def handler(row: Any) -> str:
        bad.append(row)
        return "skip"

    pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, null_values=NULL_VALUES),
    )
    if not bad:
        return f"{path}: a row has the wrong number of fields"
    row = bad[0]
    where = f"line {row.number}" if row.number is not None else "a row"
    kind = "truncated row" if row.actual_columns < row.expected_columns else "extra fields"
    more = f" (and {len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
    return (f"{path}: {where}: expected {row.expected_columns} fields, "
            f"found {row.actual_columns} ({kind}): {row.text[:80]!r}{more}")


def _first_bad_utf8(path: Path) -> str:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return f" (first at line {number})"
    return ""


def _check_header(path: Path, columns: list[str]) -> None:
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise PipelineError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)


def _to_pandas(path: Path, table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    for position, field in enumerate(table.schema):
        if pa.types.is_binary(field.type):
            raise PipelineError(f"{path}: column {field.name!r}: not UTF-8 text{_first_bad_utf8(path)}")
        if pa.types.is_floating(field.type):  # pandas cannot tell NaN from a null: keep "nan", "inf" as text
            column = table.column(position)
            if pc.any(pc.and_(pc.is_valid(column), pc.invert(pc.is_finite(column)))).as_py():
                table = table.set_column(position, field.name, pc.cast(column, pa.string()))
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get)


def split_indices(config: Config, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of the train and test rows: seeded, stratified on the target for classification.

    Plain numpy instead of scikit-learn's `train_test_split`: the same idea (ceil(test_size * n)
    test rows, each class in proportion, largest remainders rounded up), vectorised, and it keeps
    scikit-learn's ~1.5 s import out of `mlops validate`.
    """
    import numpy as np
    import pandas as pd

    target = config.data.target
    if target not in df.columns:
        raise PipelineError(f"column {target!r}: target column missing, cannot split")
    n = len(df)
    n_test = int(np.ceil(config.data.test_size * n))
    if n_test < 1 or n_test >= n:
        raise PipelineError(f"cannot split {n} rows with data.test_size={config.data.test_size}")
    rng = np.random.default_rng(config.seed)
    if config.task != "classification":
        order = rng.permutation(n)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    labels = df[target]
    if labels.isna().any():
        raise PipelineError(f"column {target!r}: {int(labels.isna().sum())} rows without a label, cannot stratify")
    codes, classes = pd.factorize(labels, sort=True)
    counts = np.bincount(codes, minlength=len(classes))
    if len(classes) < 2 or counts.min() < 2:
        observed = {str(c): int(k) for c, k in zip(classes, counts, strict=False)}
        raise PipelineError(f"column {target!r}: a stratified split needs >= 2 classes with >= 2 rows each, observed {observed}")
    per_class = _allocate(counts, n_test)
    order = rng.permutation(n)
    order = order[np.argsort(codes[order], kind="stable")]  # grouped by class, shuffled within
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    grouped = codes[order]
    in_test = (np.arange(n) - starts[grouped]) < per_class[grouped]
    return np.sort(order[~in_test]), np.sort(order[in_test])


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over classes in proportion to `counts`: floors, then largest remainders."""
    import numpy as np

    exact = counts * total / counts.sum()
    share = np.floor(exact).astype(np.int64)
    rest = total - int(share.sum())
    share[np.argsort(-(exact - share), kind="stable")[:rest]] += 1
    return np.minimum(share, counts - 1)


def split(config: Config, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test frames (original index kept), the same for validate and train.

    Why one function: the leakage check in `validate` must look at exactly the split `train`
    will use, so both call this with `config.seed` and `config.data.test_size`.
    """
    train, test = split_indices(config, df)
    return df.iloc[train], df.iloc[test]
