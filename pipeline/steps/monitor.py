"""`mlops monitor`: is the deployed model still fit for production? Live rows from the prediction
log (`--log`, MLOPS_PREDICTION_LOG) or a file (`--data`, MONITOR_DATA_URL; a path or URL) are
measured per bucket of the window (`pipeline.monitor.decision`). Exit 0 healthy (or not enough
data), 1 retraining warranted, 2 bad input or no data source. `--open-pr` keeps the one
retraining pull request in line with the verdict (`pipeline.monitor.pullrequest`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.errors import PipelineError
from pipeline.steps.base import Annotation, Context, Option, Step, StepResult, say

if TYPE_CHECKING:
    import pandas as pd

# What a live file may lack or hold without being a broken feed (besides what `mlops drift` allows):
# its own row minimum and duplicates (the monitor has its own sample-size rule; repeats are real
# traffic), and nulls in the target (not labelled yet).
LIVE_NOT_A_DEFECT = ("min_rows", "duplicates")
NO_SOURCE = "no data source"


class MonitorResult(StepResult):
    verdict: str
    headline: str
    retrain_warranted: bool = False
    source: str = ""
    window: str = ""
    rule: str = ""
    breaches: int = 0
    rows: int = 0
    labelled: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)
    gates: list[dict[str, Any]] = Field(default_factory=list)
    drift: dict[str, Any] = Field(default_factory=dict)
    buckets: list[dict[str, Any]] = Field(default_factory=list)
    pull_request: dict[str, Any] | None = None

    def annotations(self) -> list[Annotation]:
        if self.verdict == NO_SOURCE:
            return [Annotation("notice", self.headline)]
        if self.verdict == "retrain":
            return [Annotation("warning", self.headline, config_key="monitor")]
        return []

    def summary_lines(self) -> list[str]:
        lines = [f"monitor: {self.headline}"]
        if self.pull_request:
            pr = self.pull_request
            lines.append(f"monitor: retraining pull request: {pr['action']}" + (f" #{pr['number']}" if pr.get("number") else "")
                         + (f" ({pr['note']})" if pr.get("note") else ""))
        return lines


def run(ctx: Context, window: str | None = None, log: str | None = None, data: str | None = None,
        open_pr: bool = False, optional: bool = False) -> tuple[int, MonitorResult]:
    """Read the live rows, decide, write monitor.md and monitor.prom, and (`--open-pr`) sync the PR."""
    from pipeline.monitor import seconds
    from pipeline.monitor.decision import RETRAIN, decide

    config = ctx.config
    if config.data.reference is None:
        raise PipelineError("data.reference is not set in mlops.yaml: monitoring needs a reference snapshot",
                            config_key="data")
    span = window or config.monitor.window
    try:
        length = seconds(span)
    except ValueError as exc:
        raise PipelineError(f"monitor --window: {exc}") from None
    data = data or os.environ.get("MONITOR_DATA_URL") or None
    log = log or _default_log(ctx)
    if data is None and log is None:
        message = ("no data source: pass --data FILE or --log URL, or set MONITOR_DATA_URL or "
                   "MLOPS_PREDICTION_LOG (or run `mlops serve` here, which logs to .mlops/predictions.db)")
        if not optional:
            raise PipelineError(f"monitor: {message}")
        result = MonitorResult(verdict=NO_SOURCE, headline=message + "; nothing to monitor, skipped", window=span)
        return 0, result
    frame, source, start, end = _live_rows(ctx, data, log, length)
    decision = decide(config, frame, ctx.reference(), start, end)
    result = MonitorResult.model_validate({"source": source, "window": span, **decision})
    _publish_figures(ctx, result)
    if open_pr:
        from pipeline.monitor import pullrequest, report

        body = report.build(config.project, result.model_dump())
        files = pullrequest.window_files(config, frame, _config_file(ctx)) if result.verdict == RETRAIN else {}
        result.pull_request = pullrequest.sync(pullrequest.Client.from_environment(), config, result.model_dump(), body,
                                               files)
    _write_report(ctx, result)
    return (1 if result.retrain_warranted else 0), result


def _default_log(ctx: Context) -> str | None:
    """MLOPS_PREDICTION_LOG, else the file `mlops serve` logs to in this workspace if it exists:
    what was served here is monitored here with no flag."""
    log = ctx.paths.prediction_log
    if log == "off":
        return None
    return log if os.environ.get("MLOPS_PREDICTION_LOG") or Path(log).is_file() else None


Window = tuple["pd.DataFrame", str, float | None, float | None]


def _live_rows(ctx: Context, data: str | None, log: str | None, length: float) -> Window:
    """(rows of the window, source name, window start, window end); the end is now for the log
    and the newest row's time for a file (an export may be hours old)."""
    from pipeline.monitor import source

    config = ctx.config
    if data is not None:
        path = _local(ctx, data)
        frame = source.from_file(config, path)
        _check_contract(ctx, frame, path)
        times = frame[source.TS].dropna()
        if times.empty or len(times) < len(frame):
            return frame, data, None, None
        end = float(times.max())
        start = end - length
        return frame[frame[source.TS] >= start].reset_index(drop=True), data, start, end
    assert log is not None
    end = time.time()
    return source.from_log(config, log, end - length, end), source._safe(log), end - length, end


def _local(ctx: Context, data: str) -> Path:
    """A path, or an http(s) URL downloaded into outputs/ first."""
    if not data.startswith(("http://", "https://")):
        return Path(data)
    import urllib.error
    import urllib.request

    suffix = ".parquet" if data.split("?")[0].endswith((".parquet", ".pq")) else ".csv"
    target = ctx.output(f"monitor-data{suffix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(data, timeout=120) as response:
            target.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise PipelineError(f"monitor: cannot download the live data from {data}: {exc}") from None
    return target


def _check_contract(ctx: Context, frame: pd.DataFrame, path: Path) -> None:
    """The live rows against the data contract: a broken feed is exit 2, never a finding."""
    from pipeline.monitor.source import META
    from pipeline.steps.drift import NOT_A_DEFECT
    from pipeline.validate import validate

    config = ctx.config
    target = config.data.target
    rows = frame.drop(columns=[c for c in META if c in frame.columns])
    if rows[target].isna().all():
        rows = rows.drop(columns=[target])
    report = validate(config, rows, None, source=str(path))
    defects = [p for p in report["problems"] if not p["check"].startswith(NOT_A_DEFECT + LIVE_NOT_A_DEFECT)
               and not (p["column"] == target and p["check"] in ("nullable", "max_null_rate"))]
    for item in defects:
        where = f"line {item['line']}: " if item.get("line") else ""
        column = f"column {item['column']!r}: " if item.get("column") else ""
        say(f"monitor: {path}: {where}{column}{item['check']}: expected {item['expected']}, observed {item['observed']}")
    if defects:
        raise PipelineError(f"monitor: {path}: {len(defects)} contract problem(s): the live data is unusable", file=str(path))


def _config_file(ctx: Context) -> Path:
    return ctx.config.root / Path(os.environ.get("MLOPS_CONFIG", "mlops.yaml")).name


def _publish_figures(ctx: Context, result: MonitorResult) -> None:
    from pipeline.monitor import prom

    project = ctx.config.project
    registry = prom.registry(project, result.model_dump())
    prom.write(ctx.output("monitor.prom"), registry)
    gateway = os.environ.get("MLOPS_PUSHGATEWAY")
    if gateway:
        prom.push(gateway, project, registry)


def _write_report(ctx: Context, result: MonitorResult) -> None:
    from pipeline.files import write_text
    from pipeline.monitor import report

    text = report.build(ctx.config.project, result.model_dump())
    pr = result.pull_request
    if pr and pr.get("number"):
        text += f"\nRetraining pull request #{pr['number']}: {pr['action']}.\n"
    write_text(ctx.output("monitor.md"), text)


STEP = Step(
    name="monitor",
    help="judge live rows (prediction log or file): live metrics and drift, N-of-M (exit 1: retrain, 2: bad input)",
    sections=("data", "validate", "evaluate", "monitor"),
    reads=(),
    writes=("monitor.json", "monitor.md", "monitor.prom"),
    result=MonitorResult,
    result_file="monitor.json",
    run=run,
    options=(
        Option("--window", "how far back to look, e.g. 7d, 12h (default: monitor.window)", metavar="DURATION"),
        Option("--log", "the prediction log (sqlite path or postgresql:// URL; default: MLOPS_PREDICTION_LOG)", metavar="URL"),
        Option("--data", "a CSV/Parquet file (or http(s) URL) of live rows (default: MONITOR_DATA_URL)", metavar="FILE"),
        Option("--open-pr", "open, update or close the retraining pull request (GitHub REST API)", is_switch=True),
        Option("--optional", "no data source configured is a notice and exit 0 (a fresh copy's schedule)", is_switch=True),
    ),
    action_outputs={"verdict": "verdict", "retrain-warranted": "retrain_warranted", "report": "@monitor.md",
                    "result": "@monitor.json"},
    in_run=False,
    failure_code=2,
)
