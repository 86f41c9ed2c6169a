"""Live rows into one frame: the contract's columns (the target holds the ground truth when it is
known, else null) plus `TS` (unix seconds or null), `PREDICTION` and `SCORE` (null when unknown).

Two sources: the server's prediction log (`pipeline.serving.predlog.export_rows`, joined labels
included) and a CSV/Parquet file of live rows (a timestamp column and `prediction` optional).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.config import Config

TS, PREDICTION, SCORE = "_ts", "_prediction", "_score"
META = (TS, PREDICTION, SCORE)


def from_log(config: Config, url: str, since: float, until: float) -> pd.DataFrame:
    """The logged rows of [since, until] with their joined labels."""
    import pandas as pd

    try:
        predlog: Any = importlib.import_module("pipeline.serving.predlog")
    except ImportError as exc:
        raise PipelineError(f"monitor: the prediction log reader is not available ({exc}); "
                            f"install the serving extra: pip install -e '.[serve]'") from None
    target, id_column = config.data.target, config.data.id_column
    records = []
    try:
        for item in predlog.export_rows(url, since=since, until=until):
            row = dict(item.get("features") or {})
            row[target] = item.get("label")
            if id_column:
                row[id_column] = item.get("id")
            row.update({TS: item.get("ts"), PREDICTION: item.get("prediction"), SCORE: item.get("score")})
            records.append(row)
    except Exception as exc:  # the store's own errors (sqlite3, psycopg) differ by backend: all are bad input here
        raise PipelineError(f"monitor: cannot read the prediction log {_safe(url)}: {type(exc).__name__}: {exc}") from None
    columns = [*config.validate_.columns, *META]
    return pd.DataFrame.from_records(records, columns=columns)


def from_file(config: Config, path: Path) -> pd.DataFrame:
    """A file of live rows in the frame's shape; `prediction`, `score` and the timestamp column
    (`monitor.timestamp_column`) are optional, and so is the target."""
    import pandas as pd

    from pipeline.data import read_table

    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise PipelineError(f"monitor: {path}: not a readable Parquet file: {exc}") from None
    else:
        frame = read_table(path, config)
    renames = {config.monitor.timestamp_column: TS, "prediction": PREDICTION, "score": SCORE}
    frame = frame.rename(columns={k: v for k, v in renames.items() if k in frame.columns})
    if TS in frame.columns:
        frame[TS] = _unix_seconds(frame[TS], path, config.monitor.timestamp_column)
    for name in META:
        if name not in frame.columns:
            frame[name] = None
    if config.data.target not in frame.columns:
        frame[config.data.target] = None
    return frame


def _unix_seconds(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Numbers are unix seconds; text is parsed as ISO 8601 (UTC when no zone is given)."""
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        return numeric.astype(float)
    try:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"monitor: {path}: column {column!r}: not unix seconds or ISO 8601 times ({exc})") from None
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
