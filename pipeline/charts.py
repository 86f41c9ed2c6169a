"""Charts for the report: Mermaid (GitHub renders it in a PR comment with no image host) and
PNG files for those who publish images.

Metrics share a chart only when they share a direction and a scale (`metrics.CHART_GROUPS`):
rmse is never squeezed onto a 0..1 axis, nor log_loss drawn beside accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.config import LOWER_IS_BETTER
from pipeline.metrics import chart_groups


def _label(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _axis(values: list[float], bounded: bool) -> tuple[float, float]:
    """The y range: 0..1 for scores where 1 is perfect (lower when r2 is negative), else 0 up to
    a little above the largest value."""
    low = min(0.0, *values)
    high = 1.0 if bounded else max(values) * 1.1 or 1.0
    return math.floor(low * 10) / 10, high


def _direction(metric: str) -> str:
    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def mermaid_metrics(metrics: dict[str, float | None], champion: dict[str, float] | None, names: list[str]) -> str:
    """One bar chart of challenger metrics (champion as a line) per direction-and-scale group."""
    charts = []
    present = [n for n in names if metrics.get(n) is not None and math.isfinite(metrics[n] or 0.0)]
    for title, members in chart_groups(present):
        values = [float(metrics[n] or 0.0) for n in members]
        old = [float(champion[n]) for n in members if n in champion] if champion else []
        low, high = _axis(values + old, bounded=title.endswith("1 is perfect"))
        lines = [
            "```mermaid",
            "xychart-beta",
            f'  title "Challenger (bars) vs champion (line): {title}"',
            "  x-axis [" + ", ".join(_label(n) for n in members) + "]",
            f'  y-axis "value" {low:.4g} --> {high:.4g}',
            "  bar [" + ", ".join(f"{v:.4g}" for v in values) + "]",
        ]
        if len(old) == len(members):
            lines.append("  line [" + ", ".join(f"{v:.4g}" for v in old) + "]")
        charts.append("\n".join([*lines, "```"]))
    return "\n\n".join(charts)


def _slice_label(s: dict[str, Any]) -> str:
    numeric = s.get("lower") is not None or s.get("upper") is not None
    return f"{s['column']} {s['value']}" if numeric else f"{s['column']}={s['value']}"


def _by_metric(slices: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for s in slices:
        if s.get("value_metric") is not None:
            grouped.setdefault(s["metric"], []).append(s)
    return grouped


def mermaid_slices(slices: list[dict[str, Any]]) -> str:
    """One bar chart per slice metric, labelled with that metric and its direction."""
    charts = []
    for metric, rows in _by_metric(slices).items():
        values = [float(s["value_metric"]) for s in rows]
        low, high = _axis(values, bounded=metric not in LOWER_IS_BETTER)
        charts.append("\n".join([
            "```mermaid",
            "xychart-beta",
            f'  title "{metric} by slice ({_direction(metric)})"',
            "  x-axis [" + ", ".join(_label(_slice_label(s)) for s in rows) + "]",
            f'  y-axis "{metric}" {low:.4g} --> {high:.4g}',
            "  bar [" + ", ".join(f"{v:.4g}" for v in values) + "]",
            "```",
        ]))
    return "\n\n".join(charts)


def preload() -> None:
    """Import matplotlib ahead of `png_plots` (0.3-0.5 s of CPU): `mlops run` has it done while
    it waits for MLflow's answer anyway (`TrackingWorker.when_idle`), so the report's PNGs do not
    pay for the import on the run's critical path. A failure is left to `png_plots` to report."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except Exception:  # png_plots meets the same problem and says so
        pass


def png_plots(evaluation: dict[str, Any], plots_dir: Path) -> list[Path]:
    """Confusion matrix (classification) or predicted-vs-actual and residual plots (regression),
    and one slice chart per slice metric, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if evaluation.get("confusion_matrix"):
        written.append(_confusion_png(evaluation["confusion_matrix"], plots_dir / "confusion_matrix.png"))
    points = (evaluation.get("residuals") or {}).get("points") or {}
    if points.get("actual"):
        written += _regression_pngs(points["actual"], points["predicted"], plots_dir)
    for metric, rows in _by_metric(evaluation.get("slices", [])).items():
        written.append(_slices_png(metric, rows, plots_dir / f"slices_{metric}.png"))
    return written


def _confusion_png(cm: dict[str, Any], path: Path) -> Path:
    return _save(confusion_figure(cm), path)


def confusion_figure(cm: dict[str, Any]) -> Any:
    """The confusion matrix with each count in white on dark cells and black on light ones."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    image = ax.imshow(cm["matrix"], cmap="Blues")
    ax.set_xticks(range(len(cm["labels"])), cm["labels"])
    ax.set_yticks(range(len(cm["labels"])), cm["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    low, high = image.get_clim()
    for i, row in enumerate(cm["matrix"]):
        for j, value in enumerate(row):
            dark = high > low and (value - low) / (high - low) > 0.5  # white on the dark half of the colour map
            ax.text(j, i, str(value), ha="center", va="center", color="white" if dark else "black", fontsize=12)
    return fig


def _regression_pngs(actual: list[float], predicted: list[float], plots_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    import numpy as np

    truth, guess = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(truth, guess, s=10, alpha=0.6)
    low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual")
    ax.legend(loc="upper left")
    first = _save(fig, plots_dir / "predicted_vs_actual.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(guess, truth - guess, s=10, alpha=0.6)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual − predicted)")
    ax.set_title("Residuals")
    return [first, _save(fig, plots_dir / "residuals.png")]


def _slices_png(metric: str, rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([_slice_label(s) for s in rows], [s["value_metric"] for s in rows])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by slice ({_direction(metric)})")
    if metric not in LOWER_IS_BETTER:
        ax.set_ylim(min(0.0, *(s["value_metric"] for s in rows)), 1.0)
    for s in rows:
        for bound in (s.get("min"), s.get("max")):
            if bound is not None:
                ax.axhline(bound, color="red", linestyle="--", linewidth=1)
    ax.tick_params(axis="x", rotation=30)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
