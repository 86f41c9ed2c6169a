"""Charts for the report: Mermaid (GitHub renders it in a PR comment with no image host) and
PNG files for those who publish images."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _label(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def mermaid_metrics(metrics: dict[str, float], champion: dict[str, float] | None, names: list[str]) -> str:
    """A bar chart of challenger metrics (and champion as a line) on one 0..1 axis."""
    shown = [n for n in names if n in metrics and 0.0 <= metrics[n] <= 1.0]
    if not shown:
        return ""
    lines = [
        "```mermaid",
        "xychart-beta",
        '  title "Challenger (bars) vs champion (line)"',
        "  x-axis [" + ", ".join(_label(n) for n in shown) + "]",
        '  y-axis "score" 0 --> 1',
        "  bar [" + ", ".join(f"{metrics[n]:.3f}" for n in shown) + "]",
    ]
    if champion:
        lines.append("  line [" + ", ".join(f"{champion.get(n, 0.0):.3f}" for n in shown) + "]")
    lines.append("```")
    return "\n".join(lines)


def mermaid_slices(slices: list[dict[str, Any]]) -> str:
    """Slice metric per group as bars."""
    rows = [s for s in slices if s.get("value_metric") is not None]
    if not rows:
        return ""
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            f'  title "{rows[0]["metric"]} by slice"',
            "  x-axis [" + ", ".join(_label(f"{s['column']}={s['value']}") for s in rows) + "]",
            '  y-axis "score" 0 --> 1',
            "  bar [" + ", ".join(f"{s['value_metric']:.3f}" for s in rows) + "]",
            "```",
        ]
    )


def png_plots(evaluation: dict[str, Any], plots_dir: Path) -> list[Path]:
    """Confusion matrix (or residual quantiles) and slice metrics as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if "confusion_matrix" in evaluation:
        cm = evaluation["confusion_matrix"]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(cm["matrix"], cmap="Blues")
        ax.set_xticks(range(len(cm["labels"])), cm["labels"])
        ax.set_yticks(range(len(cm["labels"])), cm["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        for i, row in enumerate(cm["matrix"]):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center")
        written.append(_save(fig, plots_dir / "confusion_matrix.png"))
    slices = [s for s in evaluation.get("slices", []) if s.get("value_metric") is not None]
    if slices:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar([f"{s['column']}={s['value']}" for s in slices], [s["value_metric"] for s in slices])
        ax.set_ylabel(slices[0]["metric"])
        ax.tick_params(axis="x", rotation=30)
        written.append(_save(fig, plots_dir / "slices.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
