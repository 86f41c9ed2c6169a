"""The monitor report in Markdown: the verdict first, then the buckets, live metrics and drift.
It is also the retraining pull request's body, so every data-derived value is escaped with the
PR report's helpers (`pipeline.report`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.report import FAIL, PASS, SKIP, _details, _num, _text

MARKER = "<!-- mlops-monitor -->"
ICONS = {"retrain": FAIL, "healthy": PASS}


def build(project: str, result: dict[str, Any]) -> str:
    """Markdown for people: verdict and rule, the N-of-M buckets, then the detail folded."""
    parts = [MARKER, f"## {ICONS.get(result['verdict'], SKIP)} {project}: {result['headline']}", "",
             f"Source: {_text(result['source'])}, window {_text(result['window'])}: {result['rows']} rows, "
             f"{result['labelled']} labelled.", "", f"Rule: {result['rule']}.", ""]
    parts += _buckets(result["buckets"])
    parts += _metrics(result)
    parts += _drift(result.get("drift") or {})
    return "\n".join(parts).rstrip() + "\n"


def _when(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M")


def _buckets(buckets: list[dict[str, Any]]) -> list[str]:
    rows = ["### Buckets", "", "| # | from | to | rows | labelled | drifted | failing gates | status |",
            "|---:|---|---|---:|---:|---|---|:---:|"]
    for b in buckets:
        status = {"breach": FAIL, "ok": PASS}.get(b["status"], f"{SKIP} {b['status']}")
        rows.append(f"| {b['index'] + 1} | {_when(b.get('start'))} | {_when(b.get('end'))} | {b['rows']} | {b['labelled']} | "
                    f"{', '.join(_text(n) for n in b['drifted'])} | {', '.join(b['failing'])} | {status} |")
    return [*rows, ""]


def _metrics(result: dict[str, Any]) -> list[str]:
    gates = result.get("gates") or []
    metrics = result.get("metrics") or {}
    if not metrics:
        return ["### Live metrics", "", f"{SKIP} not judged: too few labelled rows with a prediction.", ""]
    by_metric = {g["metric"]: g for g in gates}
    rows = ["### Live metrics (whole window)", "", "| metric | live | gate |", "|---|---:|:---|"]
    for name, value in metrics.items():
        gate = by_metric.get(name)
        mark = "" if gate is None or gate["passed"] is None else (
            f"{PASS if gate['passed'] else FAIL} {'≥' if gate['direction'] == 'higher' else '≤'} {gate['threshold']}")
        rows.append(f"| {name} | {_num(value)} | {mark} |")
    return [*rows, ""]


def _drift(drift: dict[str, Any]) -> list[str]:
    features = drift.get("features") or {}
    if not features:
        return []
    body = ["| feature | test | statistic | p-value | PSI | drifted |", "|---|---|---:|---:|---:|:---:|"]
    for name, row in features.items():
        body.append(f"| {_text(name)} | {row.get('test', '')} | {_num(row.get('statistic'))} | {_num(row.get('p_value'))} | "
                    f"{_num(row.get('psi'))} | {'⚠️' if row.get('drifted') else ''} |")
    return _details(f"Drift against the reference (whole window): {len(drift.get('drifted', []))} of {len(features)} "
                    f"features drifted", body)
