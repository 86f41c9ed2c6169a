"""The monitor's figures for Prometheus: one registry of gauges, written in the text exposition
format (`outputs/monitor.prom`, for a node-exporter textfile collector) and pushed to a
Pushgateway when MLOPS_PUSHGATEWAY is set. Dashboards and alert rules use these names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

JOB = "mlops_monitor"


def registry(project: str, result: dict[str, Any]) -> Any:
    """The gauges of one monitor run, labelled with the project (the model's name)."""
    try:
        from prometheus_client import CollectorRegistry, Gauge
    except ImportError:
        raise PipelineError("monitor: prometheus_client is missing; install the serving extra: "
                            "pip install -e '.[serve]'") from None
    reg = CollectorRegistry()
    metric = Gauge("mlops_monitor_live_metric", "Model metric on labelled live rows of the window",
                   ["project", "metric"], registry=reg)
    for name, value in (result.get("metrics") or {}).items():
        if value is not None:
            metric.labels(project, name).set(value)
    # The gate beside the metric, so alert rules and dashboards compare against mlops.yaml's own
    # threshold instead of a copy of it.
    gate = Gauge("mlops_monitor_live_gate", "The live metric's gate threshold (direction: higher or lower is better)",
                 ["project", "metric", "direction"], registry=reg)
    for row in result.get("gates") or []:
        gate.labels(project, row["metric"], row["direction"]).set(row["threshold"])
    psi = Gauge("mlops_monitor_drift_psi", "PSI of a feature's live values against the reference",
                ["project", "feature"], registry=reg)
    drifted = Gauge("mlops_monitor_drifted", "1 when the feature drifted (PSI and test)", ["project", "feature"],
                    registry=reg)
    for name, row in ((result.get("drift") or {}).get("features") or {}).items():
        if row.get("psi") is not None:
            psi.labels(project, name).set(row["psi"])
        drifted.labels(project, name).set(1.0 if row.get("drifted") else 0.0)
    singles = {
        "mlops_monitor_retrain_warranted": ("1 when the N-of-M rule warrants retraining", float(result["retrain_warranted"])),
        "mlops_monitor_labelled_rows": ("Labelled live rows with a prediction in the window", result["labelled"]),
        "mlops_monitor_rows": ("Live rows in the window", result["rows"]),
        "mlops_monitor_breached_buckets": ("Buckets of the window that breached", result["breaches"]),
        "mlops_monitor_enough_data": ("0 when no bucket reached the minimum sample size",
                                      0.0 if result["verdict"] == "not enough data" else 1.0),
    }
    for name, (help_text, value) in singles.items():
        Gauge(name, help_text, ["project"], registry=reg).labels(project).set(value)
    Gauge("mlops_monitor_last_run_timestamp_seconds", "When the monitor last ran", ["project"],
          registry=reg).labels(project).set_to_current_time()
    return reg


def write(path: Path, reg: Any) -> None:
    from prometheus_client import generate_latest

    from pipeline.files import write_text

    write_text(path, generate_latest(reg).decode("utf-8"))


def push(gateway: str, project: str, reg: Any) -> None:
    """Push to the Pushgateway (grouped by project, replacing the last push of this job)."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(gateway, job=JOB, grouping_key={"project": project}, registry=reg, timeout=30)
    except OSError as exc:
        raise PipelineError(f"monitor: cannot push to the Pushgateway MLOPS_PUSHGATEWAY={gateway}: {exc}") from None
