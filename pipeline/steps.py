"""The I/O layer around the pure steps: read inputs, call the step, write its declared outputs.

Each `run_<step>` returns an exit code (0 ok, 1 failed check) and reads only the outputs the
step before it declared in `pipeline.dag`. A `Workspace` memoises the data frames so `mlops run`
reads the data once.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config, resolve
from pipeline.dag import downstream
from pipeline.errors import PipelineError
from pipeline.paths import Paths


@dataclass
class Workspace:
    """Config, paths and the data frames a run shares between steps."""

    config: Config
    _frames: dict[str, Any] = field(default_factory=dict)
    trained: Any = None  # the model fitted by this run's train step, reused by evaluate

    @property
    def paths(self) -> Paths:
        return Paths(self.config.root)

    def table(self, path: Path) -> Any:
        from pipeline.data import read_table

        key = str(path)
        if key not in self._frames:
            self._frames[key] = read_table(path, self.config)
        return self._frames[key]

    @property
    def data_path(self) -> Path:
        return resolve(self.config, self.config.data.path)

    def data(self) -> Any:
        return self.table(self.data_path)

    def file_hash(self, path: Path) -> str:
        """Content hash of a data file, computed once per run (validate and train both need it)."""
        from pipeline.tracking import file_hash

        key = f"hash:{path}"
        if key not in self._frames:
            self._frames[key] = file_hash(path)
        return self._frames[key]

    def reference(self) -> Any:
        ref = self.config.data.reference
        return self.table(resolve(self.config, ref)) if ref is not None else None


def read_output(ws: Workspace, name: str, needed_by: str) -> dict[str, Any]:
    path = ws.paths.outputs / name
    if not path.is_file():
        step = name.removesuffix(".json")
        raise PipelineError(f"{needed_by}: {path} not found; run `mlops {step}` first")
    return json.loads(path.read_text())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def invalidate(ws: Workspace, step: str) -> None:
    """Remove the outputs of `step` and everything after it, so no stale result survives."""
    for later in downstream(step):
        for name in later.writes:
            target = ws.paths.outputs / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_validate(config: Config, data: Path | None = None, ws: Workspace | None = None) -> int:
    """Check the data contract, leakage and drift; write validate.json."""
    from pipeline.validate import problem_lines, validate

    ws = ws or Workspace(config)
    path = data if data is not None else ws.data_path
    frame = ws.table(path)
    report = validate(config, frame, ws.reference(), source=str(path))
    report["data_hash"] = ws.file_hash(path)
    if data is not None:
        write_json(ws.paths.outputs / "validate-data.json", report)
    else:
        invalidate(ws, "validate")
        write_json(ws.paths.step_output("validate"), report)
    for line in problem_lines(report, warnings=True):
        say(line)
    if not report["passed"]:
        say(f"validate: {len(report['problems'])} problem(s) in {path}")
        return 1
    say(f"validate: {path} passed {len(report.get('checks_run', []))} checks on {report['rows']} rows")
    return 0


def run_train(config: Config, ws: Workspace | None = None) -> int:
    """Train, log to MLflow, save the model to outputs/model; write train.json."""
    from pipeline import tracking
    from pipeline.train import features_and_target, train

    ws = ws or Workspace(config)
    validation = read_output(ws, "validate.json", "train")
    data_hash = ws.file_hash(ws.data_path)
    if not validation.get("passed"):
        raise PipelineError("train: the data failed validation; fix it and run `mlops validate`")
    if validation.get("data_hash") != data_hash:
        raise PipelineError("train: the data changed since it was validated; run `mlops validate`")
    from pipeline.train import new_model

    new_model(config)  # a bad estimator name or parameter fails here, before old outputs are removed
    invalidate(ws, "train")
    result = train(config, ws.data())
    features, _ = features_and_target(config, result.train.head(1000))
    complete = features.dropna()
    example = complete.head(5) if len(complete) else features.head(5)
    params = {"estimator": config.train.estimator, **config.train.params, "seed": config.seed, "test_size": config.data.test_size,
              "rows_train": len(result.train), "rows_test": len(result.test)}
    tags = {"git_sha": tracking.git_sha(config.root), "data_hash": data_hash, "config_hash": tracking.config_hash(config),
            **{f"version.{k}": v for k, v in tracking.package_versions().items()}}
    logged = tracking.log_training(config, result.model, example, params, result.metrics, tags, ws.paths.model_dir)
    ws.trained = result.model
    info = {**logged, "metrics": result.metrics, "params": params, "git_sha": tags["git_sha"], "data_hash": data_hash,
            "config_hash": tags["config_hash"], "fit_seconds": result.fit_seconds, "model_dir": str(ws.paths.model_dir),
            "tracking_uri": Paths(config.root).tracking_uri, "packages": tracking.package_versions()}
    write_json(ws.paths.step_output("train"), info)
    shown = ", ".join(f"{k}={v:.3f}" for k, v in result.metrics.items())
    say(f"train: run {logged['run_id']} fitted in {result.fit_seconds:.2f}s; test {shown}")
    return 0


def load_champion(config: Config, override: str | None) -> tuple[Any, str | None, str | None]:
    """The champion model, where it came from, and its registry version (None when not from the
    registry): --champion path, else registry alias `champion`, else the config path."""
    from pipeline import tracking
    from pipeline.promote import CHAMPION, champion_version

    if override:
        if not (Path(override) / "MLmodel").is_file():
            raise PipelineError(f"evaluate: --champion {override}: not an MLflow model directory (no MLmodel file)")
        return tracking.load_model(override), override, None
    version = None
    if tracking.registry_may_hold_champion(config):
        tracking.configure(config)
        version = champion_version(config)
    if version is not None:
        uri = f"models:/{config.registered_model}@{CHAMPION}"
        return tracking.load_model(uri), f"{uri} (version {version})", version
    spec = config.evaluate.champion
    if spec is not None and spec.path is not None:
        path = resolve(config, spec.path)
        if (path / "MLmodel").is_file():
            return tracking.load_model(str(path)), str(spec.path), None
    return None, None, None


def run_evaluate(config: Config, champion_path: str | None = None, ws: Workspace | None = None) -> int:
    """Model tests against the held-out split; write evaluate.json; exit 1 if any check fails."""
    from pipeline import tracking
    from pipeline.data import split
    from pipeline.evaluate import evaluate

    ws = ws or Workspace(config)
    info = read_output(ws, "train.json", "evaluate")
    if not (ws.paths.model_dir / "MLmodel").is_file():
        raise PipelineError(f"evaluate: {ws.paths.model_dir} not found; run `mlops train` first")
    invalidate(ws, "evaluate")
    model = ws.trained if ws.trained is not None else tracking.load_model(str(ws.paths.model_dir))
    champion, source, version = load_champion(config, champion_path)
    _, test = split(config, ws.data())
    result = evaluate(config, model, test, champion, source)
    result["run_id"] = info["run_id"]
    result["champion_version"] = version
    write_json(ws.paths.step_output("evaluate"), result)
    for line in result["failures"]:
        say(f"evaluate: FAIL {line}")
    champ = result["champion"]
    say(f"evaluate: champion: {champ.get('note') or champ.get('source')}")
    say(f"evaluate: {'passed' if result['passed'] else 'failed'} ({len(result['failures'])} failing check(s))")
    return 0 if result["passed"] else 1


def run_report(config: Config, ws: Workspace | None = None) -> int:
    """Write report.md, summary.json and plots from whatever the steps produced."""
    from pipeline.report import build_report

    ws = ws or Workspace(config)
    outputs = ws.paths.outputs
    loaded = {name: _maybe_json(outputs / f"{name}.json") for name in ("validate", "train", "evaluate")}
    invalidate(ws, "report")
    markdown, summary = build_report(config, loaded, plots_dir=ws.paths.plots)
    ws.paths.report_md.parent.mkdir(parents=True, exist_ok=True)
    ws.paths.report_md.write_text(markdown)
    write_json(ws.paths.summary_json, summary)
    say(f"report: {ws.paths.report_md} (verdict: {summary['verdict']})")
    return 0


def run_promote(config: Config, challenger_only: bool = False, ws: Workspace | None = None) -> int:
    """Register the challenger and, if every gate passed, move the champion alias to it."""
    from pipeline import tracking
    from pipeline.promote import promote

    ws = ws or Workspace(config)
    info = read_output(ws, "train.json", "promote")
    evaluation = read_output(ws, "evaluate.json", "promote") if not challenger_only else {}
    if not challenger_only and evaluation.get("run_id") != info["run_id"]:
        raise PipelineError("promote: evaluate.json belongs to another training run; run `mlops evaluate`")
    tracking.configure(config)
    result = promote(config, info, evaluation, challenger_only)
    write_json(ws.paths.outputs / "promote.json", result)
    moved = f"champion -> version {result['version']}" if result["moved"] else "champion unchanged"
    say(f"promote: {config.registered_model} version {result['version']} is `challenger`; {moved}")
    return 0


def _maybe_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None
