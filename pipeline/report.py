"""The peer-review report: one Markdown document for the PR comment and the job summary, plus a
JSON summary. The verdict comes first; long sections fold; a hidden marker line lets the comment
workflow find and edit its own comment on every re-run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.charts import mermaid_metrics, mermaid_slices, png_plots
from pipeline.config import LOWER_IS_BETTER, PARITY, Config
from pipeline.evaluate import bounds, champion_detail
from pipeline.metrics import CLASSIFICATION, REGRESSION

MARKER = "<!-- mlops-report -->"
PASS, FAIL, SKIP = "✅", "❌", "➖"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # line breaks and control characters in data values


def consistent(loaded: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
    """Drop outputs that belong to another run (stale files must never reach a verdict)."""
    validate, train, evaluate = loaded.get("validate"), loaded.get("train"), loaded.get("evaluate")
    if validate is None or not validate.get("passed") or (train and train.get("data_hash") != validate.get("data_hash")):
        train = None
    if train is None or (evaluate and evaluate.get("run_id") != train.get("run_id")):
        evaluate = None
    return {"validate": validate, "train": train, "evaluate": evaluate}


def verdict(loaded: dict[str, dict[str, Any] | None]) -> tuple[str, str]:
    """('pass' | 'fail' | 'incomplete', headline)."""
    validate, train, evaluate = loaded["validate"], loaded["train"], loaded["evaluate"]
    if validate is None:
        return "incomplete", "Data validation did not run"
    if not validate.get("passed"):
        return "fail", f"Data validation failed ({len(validate.get('problems', []))} problem(s)); the model was not trained"
    if train is None:
        return "incomplete", "Training did not run"
    if evaluate is None:
        return "incomplete", "Model tests did not run"
    if not evaluate.get("passed"):
        return "fail", f"Model tests failed ({len(evaluate.get('failures', []))} failing check(s))"
    return "pass", "Every data check and model test passed"


def build_report(config: Config, loaded: dict[str, dict[str, Any] | None], plots_dir: Path) -> tuple[str, dict[str, Any]]:
    """Markdown and JSON summary from the step outputs that exist and belong together."""
    loaded = consistent(loaded)
    status, headline = verdict(loaded)
    icon = {"pass": PASS, "fail": FAIL}.get(status, SKIP)
    validate, train, evaluate = loaded["validate"], loaded["train"], loaded["evaluate"]
    parts = [MARKER, f"## {icon} {config.project}: {headline}", ""]
    if evaluate and evaluate.get("failures"):
        parts += ["**Failing checks**", ""] + [f"- {FAIL} {_text(line)}" for line in evaluate["failures"]] + [""]
    if validate and validate.get("problems"):
        parts += ["**Data problems**", ""] + [f"- {FAIL} {_problem(p)}" for p in validate["problems"]] + [""]
    if evaluate:
        parts += metrics_section(config, evaluate)
        parts += checks_section(evaluate)
    if validate:
        parts += validation_section(validate)
    if evaluate:
        parts += slices_section(evaluate) + behaviour_section(evaluate) + errors_section(evaluate)
    parts += search_section(train)
    parts += lineage_section(config, train)
    plots = png_plots(evaluate, plots_dir) if evaluate else []
    if plots:
        parts += [f"<sub>PNG plots written as files: {', '.join(p.name for p in plots)}</sub>", ""]
    summary = {
        "verdict": status,
        "headline": headline,
        "project": config.project,
        "task": config.task,
        "metrics": evaluate["metrics"] if evaluate else None,
        "champion": evaluate["champion"] if evaluate else None,
        "failures": (evaluate or {}).get("failures", []) + [_problem(p) for p in (validate or {}).get("problems", [])],
        "run_id": train["run_id"] if train else None,
        "plots": [p.name for p in plots],
    }
    return "\n".join(parts).rstrip() + "\n", summary


def metrics_section(config: Config, evaluate: dict[str, Any]) -> list[str]:
    names = list(CLASSIFICATION if config.task == "classification" else REGRESSION)
    metrics, champion = evaluate["metrics"], evaluate.get("champion_metrics")
    gates = {g["metric"]: g for g in evaluate.get("gates", [])}
    rows = ["### Metrics", "", "| metric | challenger | champion | Δ | gate |", "|---|---:|---:|---:|:---|"]
    for name in names:
        if name not in metrics:
            continue
        value = metrics[name]
        old = champion.get(name) if champion else None
        delta = "" if old is None else _delta(value - old, name)
        gate = gates.get(name)
        mark = "" if gate is None else (f"{PASS if gate['passed'] else FAIL} "
                                        f"{'≥' if gate['direction'] == 'higher' else '≤'} {gate['threshold']}")
        rows.append(f"| {name} | {value:.4f} | {'' if old is None else f'{old:.4f}'} | {delta} | {mark} |")
    chart = mermaid_metrics(metrics, champion, names)
    return [*rows, "", chart, ""] if chart else [*rows, ""]


def checks_section(evaluate: dict[str, Any]) -> list[str]:
    champ = evaluate["champion"]
    lines = ["### Model tests", "", "| check | result | detail |", "|---|:---:|---|"]
    if champ.get("interval") is not None:
        detail = (f"{champ['metric']} {champ['challenger']:.4f} vs {champ['champion']:.4f}: {champion_detail(champ)}; "
                  f"champion from {_text(champ['source'])}")
    else:
        detail = _text(champ.get("note") or "")
    lines.append(f"| champion comparison | {_mark(champ['passed'])} | {detail} |")
    lines.append(_count_row("quality gates", evaluate.get("gates") or []))
    fair = evaluate.get("fairness")
    if fair:
        what = fair["metric"] if fair["metric"] == PARITY else f"largest {fair['metric']} gap between groups"
        detail = (_text(fair["note"]) if fair.get("value") is None else
                  f"{what} of {_text(fair['column'])} = {fair['value']:.4g} (max {fair['max']})")
        if fair.get("too_small"):
            detail += f"; left out (too few rows): {_text(', '.join(fair['too_small']))}"
        lines.append(f"| fairness | {_mark(fair['passed'])} | {detail} |")
    else:
        lines.append(f"| fairness | {SKIP} | not configured |")
    lines.append(_count_row("behavioural tests", evaluate.get("behaviour") or []))
    lines.append(_count_row("slices", evaluate.get("slices") or []))
    return [*lines, ""]


def _count_row(name: str, checks: list[dict[str, Any]]) -> str:
    if not checks:
        return f"| {name} | {SKIP} | not configured |"
    return f"| {name} | {_mark(all(c['passed'] for c in checks))} | {sum(c['passed'] for c in checks)}/{len(checks)} passed |"


def validation_section(validate: dict[str, Any]) -> list[str]:
    drift = validate.get("drift") or {}
    features = drift.get("features") or {}
    drifted = [name for name, row in features.items() if row.get("drifted")]
    leakage = validate.get("leakage") or {}
    title = (f"Data validation: {'passed' if validate.get('passed') else 'failed'}, {validate.get('rows', '?')} rows, "
             f"{len(validate.get('checks_run', []))} checks; drift in {len(drifted)} of {len(features)} features")
    body = [f"Source: `{validate.get('source')}`", ""]
    for warning in validate.get("warnings", []):
        body.append(f"- ⚠️ {_problem(warning)}")
    if leakage:
        body += ["", "**Leakage**: " + ", ".join(f"{k}: {v}" for k, v in leakage.items() if not isinstance(v, (dict, list)))]
    if features:
        body += ["", "| feature | test | statistic | p-value | PSI | drifted |", "|---|---|---:|---:|---:|:---:|"]
        for name, row in features.items():
            body.append(
                f"| {_text(name)} | {row.get('test', '')} | {_num(row.get('statistic'))} | {_num(row.get('p_value'))} | "
                f"{_num(row.get('psi'))} | {'⚠️' if row.get('drifted') else ''} |"
            )
    return _details(title, body)


def slices_section(evaluate: dict[str, Any]) -> list[str]:
    slices = evaluate.get("slices", [])
    if not slices:
        return []
    body = ["| column | group | rows | metric | value | allowed | result |", "|---|---|---:|---|---:|---|:---:|"]
    for s in slices:
        result = _mark(s["passed"]) + (f" {_text(s['note'])}" if s.get("note") else "")
        body.append(f"| {_text(s['column'])} | {_text(s['value'])} | {s['rows']} | {s['metric']} | "
                    f"{_num(s.get('value_metric'))} | {bounds(s.get('min'), s.get('max'))} | {result} |")
    chart = mermaid_slices(slices)
    return _details(f"Slices: {sum(s['passed'] for s in slices)}/{len(slices)} passed", body + (["", chart] if chart else []))


def behaviour_section(evaluate: dict[str, Any]) -> list[str]:
    tests = evaluate.get("behaviour", [])
    if not tests:
        return []
    body = ["| kind | test | result | detail |", "|---|---|:---:|---|"]
    body += [f"| {b['kind']} | {_text(b['name'])} | {_mark(b['passed'])} | {_text(b['detail'])} |" for b in tests]
    return _details(f"Behavioural tests: {sum(b['passed'] for b in tests)}/{len(tests)} passed", body)


def errors_section(evaluate: dict[str, Any]) -> list[str]:
    if evaluate.get("confusion_matrix"):
        cm = evaluate["confusion_matrix"]
        header = "| actual \\ predicted | " + " | ".join(_text(label) for label in cm["labels"]) + " |"
        body = [header, "|---|" + "---:|" * len(cm["labels"])]
        body += [f"| **{_text(label)}** | " + " | ".join(str(v) for v in row) + " |"
                 for label, row in zip(cm["labels"], cm["matrix"], strict=False)]
        return _details("Confusion matrix", body)
    res = evaluate.get("residuals") or {}
    body = [f"mean {_num(res.get('mean'))}, std {_num(res.get('std'))}", "", "| quantile | residual |", "|---|---:|"]
    body += [f"| {q['name']} | {_num(q['value'])} |" for q in res.get("quantiles") or []]
    return _details("Residuals (actual − predicted)", body)


SHOWN_TRIALS = 10  # the trials table shows the best ones; every trial is a child run in MLflow


def search_section(train: dict[str, Any] | None) -> list[str]:
    """The hyperparameter search: the best params (the trained model's) and the best trials."""
    search = (train or {}).get("search")
    if not search:
        return []
    trials = sorted(search["trials"], key=lambda t: t["rank"])
    names = list(dict.fromkeys(name for t in trials for name in t["params"]))
    best = ", ".join(f"{_text(k)} = {_text(v)}" for k, v in search["best_params"].items())
    body = [f"Best params: {best}: {search['metric']} {search['best_score']:.4f} ({search['folds']}-fold "
            f"cross-validation on the training split, {search['direction']} is better); refit on the whole "
            f"training split. Backend: {_text(train.get('backend', 'local')) if train else ''}.", "",
            "| rank | " + " | ".join(_text(n) for n in names) + f" | {search['metric']} (mean ± std) | fit s |",
            "|---:|" + "---|" * len(names) + "---:|---:|"]
    for t in trials[:SHOWN_TRIALS]:
        cells = " | ".join(_text(t["params"].get(n, "")) for n in names)
        body.append(f"| {t['rank']} | {cells} | {t['mean']:.4f} ± {t['std']:.4f} | {t['fit_seconds']:.2f} |")
    if len(trials) > SHOWN_TRIALS:
        body += ["", f"{len(trials) - SHOWN_TRIALS} more trial(s) are child runs of the MLflow run."]
    return _details(f"Hyperparameter search ({search['method']}): {len(trials)} trials, best {search['metric']} "
                    f"{search['best_score']:.4f}", body)


def lineage_section(config: Config, train: dict[str, Any] | None) -> list[str]:
    if not train:
        return []
    body = [
        f"- git sha: `{train.get('git_sha')}`",
        f"- MLflow run: `{train.get('run_id')}` ({train.get('tracking_uri', '')})",
        f"- model: `{train.get('model_uri')}`",
        f"- data hash: `{train.get('data_hash')}`",
        f"- config hash: `{train.get('config_hash')}`",
        f"- estimator: `{config.train.estimator}` {_fitted_params(config, train)}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in (train.get("packages") or {}).items()),
    ]
    return _details("Lineage", body)


def _fitted_params(config: Config, train: dict[str, Any]) -> dict[str, Any]:
    """train.params plus the search's best params: what the model was actually fitted with."""
    return {**config.train.params, **((train.get("search") or {}).get("best_params") or {})}


def _details(title: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{title}</summary>", "", *body, "", "</details>", ""]


def _problem(p: dict[str, Any]) -> str:
    column = f"column {_text(p['column'])} " if p.get("column") else ""
    return f"{_text(p.get('check'))}: {column}expected {_text(p.get('expected'))}, observed {_text(p.get('observed'))}"


def _text(value: Any) -> str:
    """Data-derived text as a code span, which GitHub renders as text: no HTML, no @mention and
    no link from a category or column name (the comment gate refuses those outside code), and an
    escaped `|` so a table row holds. The fence is longer than any backtick run in the value."""
    text = _CONTROL.sub(" ", str(value)).replace("|", "\\|")
    if not text.strip():
        return text
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _mark(passed: bool) -> str:
    return PASS if passed else FAIL


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _delta(delta: float, name: str) -> str:
    better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
    arrow = "" if abs(delta) < 1e-12 else (" 🟢" if better else " 🔴")
    return f"{delta:+.4f}{arrow}"
