"""Typed configuration: `mlops.yaml` parsed once, validated at start-up.

Every section is a pydantic model with `extra="forbid"`, so a misspelled key fails with its
dotted name instead of being silently ignored. Paths are resolved against the config file's
folder and must exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import PipelineError, clip

DEFAULT_CONFIG = "mlops.yaml"

# The metric names gates, slices and the champion comparison may use, per task (pipeline.metrics
# computes exactly these; kept here so the config is checked without importing scikit-learn).
METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mape"})


class Strict(BaseModel):
    """Base for every section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(Strict):
    """One column of the data contract."""

    type: Literal["int", "float", "string", "category", "bool"]
    nullable: bool = False
    max_null_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    unique: bool = False
    feature: bool = True


class DataConfig(Strict):
    path: Path
    reference: Path | None = None
    target: str
    id_column: str | None = None
    positive_class: str | None = None
    test_size: float = Field(default=0.25, gt=0.0, lt=1.0)


class DriftConfig(Strict):
    psi_threshold: float = 0.2
    p_value: float = 0.01
    bins: int = Field(default=10, ge=2)
    on_drift: Literal["warn", "fail"] = "warn"


class ValidateConfig(Strict):
    min_rows: int = Field(default=1, ge=1)
    extra_columns: Literal["warn", "fail"] = "fail"
    max_duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    columns: dict[str, ColumnSpec]
    drift: DriftConfig = DriftConfig()


class SearchRange(Strict):
    """A continuous (or, with `integer`, whole-number) range a random search samples from;
    `log` samples evenly on a log scale (learning rates, regularisation strengths)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0 (got {self.low})")
        return self


class SearchConfig(Strict):
    """A hyperparameter search over the estimator's params (`train.params` are the fixed ones):
    `grid` tries every combination of the listed values, `random` samples `max_trials` of them
    (lists or ranges), seeded by `seed`. Each candidate is scored by `folds`-fold cross-validation
    of `metric` on the training split; the best is refit on the whole training split."""

    method: Literal["grid", "random"] = "grid"
    space: dict[str, list[Any] | SearchRange]
    max_trials: int = Field(default=20, ge=1)
    metric: str | None = None  # None: evaluate.champion.metric, else the task's first metric
    direction: Literal["higher", "lower"] | None = None  # None: the metric's own
    folds: int = Field(default=3, ge=2)

    @field_validator("space", mode="before")
    @classmethod
    def _ranges(cls, space: Any) -> Any:
        """A mapping is a range: checked here so the message names the parameter, not pydantic's union."""
        if not isinstance(space, dict):
            return space
        checked = {}
        for name, values in space.items():
            if isinstance(values, dict):
                try:
                    values = SearchRange.model_validate(values)
                except ValidationError as exc:
                    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'range'}: {e['msg'].removeprefix('Value error, ')}"
                                         for e in exc.errors())
                    raise ValueError(f"{name}: {problems} (a range is {{low, high, log, integer}})") from None
            elif not isinstance(values, list):
                raise ValueError(f"{name}: give a list of values or a range {{low, high}} (got {clip(repr(values))})")
            checked[name] = values
        return checked


class TrainConfig(Strict):
    estimator: str
    params: dict[str, Any] = {}
    search: SearchConfig | None = None
    # local: this machine; ray: the trials run as tasks on the Ray cluster at RAY_ADDRESS (setting
    # RAY_ADDRESS alone also selects it).
    backend: Literal["local", "ray"] = "local"


class Gate(Strict):
    """A quality gate as data: `metric` must be above/below `threshold`."""

    metric: str
    threshold: float
    direction: Literal["higher", "lower"] = "higher"


class SliceGate(Strict):
    """The metric per group of `column`, held within [min, max]. A numeric column is grouped by
    `bins` (cut points; the outer groups are open-ended) or `quantiles` (N equal-count groups of
    the evaluation rows), never one slice per distinct value."""

    column: str
    metric: str
    min: float | None = None
    max: float | None = None
    min_rows: int = 5
    bins: list[float] | None = Field(default=None, min_length=1)
    quantiles: int | None = Field(default=None, ge=2)

    @model_validator(mode="after")
    def _one_grouping(self) -> SliceGate:
        if self.bins is not None and self.quantiles is not None:
            raise ValueError("set bins or quantiles, not both")
        if self.bins is not None and sorted(set(self.bins)) != self.bins:
            raise ValueError(f"bins must be strictly increasing (got {self.bins})")
        return self


# The fairness measure for classification; any task metric instead measures a group gap.
PARITY = "demographic_parity_difference"


class FairnessConfig(Strict):
    """The largest gap between the groups of `column`: the demographic parity difference
    (classification), or the spread of a task metric such as mae across groups (either task)."""

    column: str
    metric: str = PARITY
    max: float = Field(ge=0.0)
    min_rows: int = Field(default=5, ge=1)


class ChampionConfig(Strict):
    """Non-inferiority: the worse end of the paired-bootstrap interval of (challenger − champion)
    on the same rows may be at most `tolerance` worse."""

    metric: str
    direction: Literal["higher", "lower"] = "higher"
    tolerance: float = Field(default=0.0, ge=0.0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    resamples: int = Field(default=1000, ge=100)
    path: Path | None = None


class InvarianceTest(Strict):
    """Changing `column` to each of `values` must not move the prediction by more than `max_change`."""

    name: str
    column: str
    values: list[Any]
    max_change: float = 0.0


class DirectionalTest(Strict):
    """Adding `delta` to numeric `column` must move the score in `expect` direction."""

    name: str
    column: str
    delta: float
    expect: Literal["increase", "decrease"]
    min_rate: float = Field(default=0.9, ge=0.0, le=1.0)


class MinimumTest(Strict):
    """A known case the model must get right."""

    name: str
    row: dict[str, Any]
    expect: Any
    tolerance: float = 0.0


class BehaviourConfig(Strict):
    max_rows: int = Field(default=20_000, ge=1)
    invariance: list[InvarianceTest] = []
    directional: list[DirectionalTest] = []
    minimum: list[MinimumTest] = []


class EvaluateConfig(Strict):
    gates: list[Gate] = []
    slices: list[SliceGate] = []
    fairness: FairnessConfig | None = None
    champion: ChampionConfig | None = None
    behaviour: BehaviourConfig = BehaviourConfig()


class PromoteConfig(Strict):
    registered_model: str | None = None


class MonitorConfig(Strict):
    """`mlops monitor`: live rows over `window`, split into `buckets` equal spans of time (of rows,
    when the data has no timestamps); retraining is warranted when at least `breaches` of them
    breach (a drifted feature, or a live metric failing its gate). A bucket with fewer than
    `min_rows` rows (`min_labelled` labelled rows for the metrics) is "not enough data", never a
    finding."""

    window: str = Field(default="7d", pattern=r"^[0-9]+[mhdw]$")
    buckets: int = Field(default=7, ge=1)
    breaches: int = Field(default=3, ge=1)
    min_rows: int = Field(default=50, ge=1)
    min_labelled: int = Field(default=30, ge=1)
    gates: list[Gate] | None = None  # live-metric gates; None: evaluate.gates
    timestamp_column: str = "timestamp"
    cooldown: str = Field(default="3d", pattern=r"^[0-9]+[mhdw]$")
    data_dir: Path = Path("data/monitor")
    max_train_rows: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _n_of_m(self) -> MonitorConfig:
        if self.breaches > self.buckets:
            raise ValueError(f"breaches ({self.breaches}) must be at most buckets ({self.buckets})")
        return self


class Config(Strict):
    project: str
    task: Literal["classification", "regression"]
    seed: int = 42
    data: DataConfig
    validate_: ValidateConfig = Field(alias="validate")
    train: TrainConfig
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    monitor: MonitorConfig = MonitorConfig()
    root: Path = Field(default=Path("."), exclude=True)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("use letters, digits, '-', '_' or '.' only")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        columns = self.validate_.columns
        if self.data.target not in columns:
            raise ValueError(f"data.target {self.data.target!r} is not declared in validate.columns")
        if self.data.id_column and self.data.id_column not in columns:
            raise ValueError(f"data.id_column {self.data.id_column!r} is not declared in validate.columns")
        target = columns[self.data.target]
        classification = self.task == "classification"
        if classification and self.data.positive_class is None and (not target.allowed or len(target.allowed) != 2):
            raise ValueError("data.positive_class is required unless the target allows exactly two classes")
        if classification and target.allowed and self.data.positive_class not in (None, *target.allowed):
            raise ValueError(f"data.positive_class {self.data.positive_class!r} is not one of "
                             f"the target's allowed values {target.allowed}")
        if self.task == "regression" and target.type not in ("int", "float"):
            raise ValueError(f"task regression needs a numeric target; "
                             f"validate.columns.{self.data.target}.type is {target.type!r}")
        if not classification and self.data.positive_class is not None:
            raise ValueError("data.positive_class: only for classification; remove it for task regression")
        problems = list(self._evaluate_references())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _evaluate_references(self):
        """Every column, value and metric the model tests name must exist: a typo fails at start-up."""
        columns, features, known = self.validate_.columns, set(self.feature_columns), METRICS[self.task]
        spec = self.evaluate
        for i, gate in enumerate(spec.gates):
            if gate.metric not in known:
                yield f"evaluate.gates.{i}.metric: unknown metric {gate.metric!r} for {self.task} (known: {', '.join(known)})"
        for i, item in enumerate(spec.slices):
            yield from _slice_problems(f"evaluate.slices.{i}", item, columns, known, self.task)
        if spec.fairness:
            yield from _fairness_problems(spec.fairness, columns, known, self.task)
        for i, gate in enumerate(self.monitor.gates or []):
            if gate.metric not in known:
                yield f"monitor.gates.{i}.metric: unknown metric {gate.metric!r} for {self.task} (known: {', '.join(known)})"
        search = self.train.search
        if search:
            yield from _search_problems(search)
        if search and search.metric is not None and search.metric not in known:
            yield f"train.search.metric: unknown metric {search.metric!r} for {self.task} (known: {', '.join(known)})"
        overlap = sorted(set(search.space) & set(self.train.params)) if search else []
        if overlap:
            yield f"train.search.space: {overlap} also fixed in train.params; keep each parameter in one place"
        if spec.champion and spec.champion.metric not in known:
            yield f"evaluate.champion.metric: unknown metric {spec.champion.metric!r} for {self.task}"
        for i, invariance in enumerate(spec.behaviour.invariance):
            key = f"evaluate.behaviour.invariance.{i}"
            if invariance.column not in features:
                yield f"{key}.column: {invariance.column!r} is not a feature column"
            elif allowed := columns[invariance.column].allowed:
                unknown = [v for v in invariance.values if str(v) not in allowed]
                if unknown:
                    yield f"{key}.values: {unknown} not in validate.columns.{invariance.column}.allowed"
        for i, directional in enumerate(spec.behaviour.directional):
            if directional.column not in features or columns[directional.column].type not in ("int", "float"):
                yield f"evaluate.behaviour.directional.{i}.column: {directional.column!r} is not a numeric feature column"
        for i, minimum in enumerate(spec.behaviour.minimum):
            yield from self._minimum_problems(f"evaluate.behaviour.minimum.{i}", minimum)

    def _minimum_problems(self, key: str, test: MinimumTest):
        """A known answer the server can be asked too: every feature given (the server refuses a
        row without them), an expectation of the target's kind."""
        features = self.feature_columns
        unknown = sorted(set(test.row) - set(features))
        if unknown:
            yield f"{key}.row: {unknown} are not feature columns"
        missing = [c for c in features if c not in test.row]
        if missing:
            yield (f"{key}.row: missing feature(s) {missing} (give every feature; write null for a missing "
                   f"value of a nullable column)")
        target = self.validate_.columns[self.data.target]
        if self.task == "regression" and (isinstance(test.expect, bool) or not isinstance(test.expect, int | float)):
            yield f"{key}.expect: {test.expect!r} is not a number (task regression)"
        if self.task == "classification":
            if target.allowed and str(test.expect) not in target.allowed:
                yield f"{key}.expect: {test.expect!r} is not one of the target's allowed values {target.allowed}"
            if test.tolerance:
                yield f"{key}.tolerance: only for regression (a class is right or wrong)"

    @property
    def validate(self) -> ValidateConfig:  # type: ignore[override]
        return self.validate_

    @property
    def search_metric(self) -> tuple[str, str]:
        """(metric, direction) the search optimises: its own, else the champion comparison's."""
        search, champion = self.train.search, self.evaluate.champion
        if search and search.metric:
            metric, direction = search.metric, "lower" if search.metric in LOWER_IS_BETTER else "higher"
        elif champion:
            metric, direction = champion.metric, champion.direction
        else:
            metric = METRICS[self.task][0]
            direction = "lower" if metric in LOWER_IS_BETTER else "higher"
        return metric, (search.direction if search and search.direction else direction)

    @property
    def registered_model(self) -> str:
        return self.promote.registered_model or self.project

    @property
    def positive_class(self) -> str | None:
        if self.task != "classification":
            return None
        allowed = self.validate_.columns[self.data.target].allowed
        return self.data.positive_class or (allowed[-1] if allowed else None)

    @property
    def feature_columns(self) -> list[str]:
        skip = {self.data.target, self.data.id_column}
        return [name for name, spec in self.validate_.columns.items() if name not in skip and spec.feature]



def _search_problems(search: SearchConfig):
    key = "train.search.space"
    if not search.space:
        yield f"{key}: empty; name at least one estimator parameter and its values"
    for name, values in search.space.items():
        if isinstance(values, list) and not values:
            yield f"{key}.{name}: no values (give at least one)"
        if isinstance(values, SearchRange) and search.method == "grid":
            yield f"{key}.{name}: a range needs method: random (a grid takes a list of values)"
    if search.method == "grid" and search.space:
        combinations = math.prod(len(v) if isinstance(v, list) else 1 for v in search.space.values())
        if combinations > search.max_trials:
            yield (f"{key}: the grid has {combinations} combinations, more than train.search.max_trials "
                   f"({search.max_trials}); shrink it, raise max_trials or use method: random")


def _slice_problems(key: str, item: SliceGate, columns: dict[str, ColumnSpec], known: tuple[str, ...], task: str):
    if item.metric not in known:
        yield f"{key}.metric: unknown metric {item.metric!r} for {task}"
    if item.column not in columns:
        yield f"{key}.column: {item.column!r} is not declared in validate.columns"
        return
    numeric = columns[item.column].type in ("int", "float")
    if numeric and item.bins is None and item.quantiles is None:
        yield (f"{key}: column {item.column!r} is numeric: set bins: [cut points] or quantiles: N "
               f"(one slice per distinct value is noise)")
    if not numeric and (item.bins is not None or item.quantiles is not None):
        yield f"{key}: bins and quantiles are for numeric columns; {item.column!r} is {columns[item.column].type}"
    if item.min is None and item.max is None:
        yield f"{key}: set min or max (a slice without a bound checks nothing)"


def _fairness_problems(spec: FairnessConfig, columns: dict[str, ColumnSpec], known: tuple[str, ...], task: str):
    if spec.column not in columns:
        yield f"evaluate.fairness.column: {spec.column!r} is not declared in validate.columns"
    if spec.metric == PARITY and task != "classification":
        yield (f"evaluate.fairness.metric: {PARITY} needs classes; for {task} choose a metric whose largest gap "
               f"between groups is held under max ({', '.join(known)})")
    elif spec.metric != PARITY and spec.metric not in known:
        choices = ", ".join((PARITY, *known) if task == "classification" else known)
        yield f"evaluate.fairness.metric: unknown metric {spec.metric!r} for {task} (known: {choices})"
    if spec.metric == PARITY and spec.max > 1:
        yield f"evaluate.fairness.max: {spec.max} is above 1, the largest possible {PARITY}"


def _format_error(path: Path, exc: ValidationError) -> str:
    """One line per problem, as `FILE: key: message`, without pydantic's wording around it.

    Cross-checks raise one ValueError naming their keys, one per line ("evaluate.gates.0.metric:
    ..."): each becomes its own line, and pydantic's "(top level): Value error, " goes.
    """
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key (misspelled?)"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"].removeprefix("Value error, ")))
        else:
            message = err["msg"]
            if "input" in err:
                message += f" (got {clip(repr(err['input']))})"
        for part in message.splitlines() or [message]:
            lines.append(f"{path}: {key}: {part}" if key else f"{path}: {part}")
    return "\n".join(lines)


def load_config(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Read and validate the config; raise PipelineError naming the bad key or file."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: expected a mapping of sections at the top level")
    root = path.resolve().parent
    try:
        config = Config.model_validate({**raw, "root": root})
    except ValidationError as exc:
        first = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else None
        raise PipelineError(_format_error(path, exc), config_key=first) from None
    _check_files(path, config)
    return config


def _check_files(path: Path, config: Config) -> None:
    checks = {"data.path": config.data.path, "data.reference": config.data.reference}
    for key, value in checks.items():
        if value is not None and not (config.root / value).is_file():
            raise PipelineError(f"{path}: {key}: file not found: {value}", config_key=key)


def resolve(config: Config, relative: Path) -> Path:
    """A config path made absolute against the config file's folder."""
    return relative if relative.is_absolute() else config.root / relative
