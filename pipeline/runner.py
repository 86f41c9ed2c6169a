"""Running steps: one (`mlops validate`, `mlops train`, ...) or the pull-request path (`mlops run`).

Both go through `execute`, so a step behaves the same either way: its own and every later step's
outputs are removed before it runs (a failure of any kind leaves nothing stale behind), its
typed result is written atomically, and the step cache learns what happened. `mlops run` adds
the cache (`pipeline.cache`): a step whose key and outputs are unchanged is skipped, and a warm
run imports no ML library at all.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pipeline import steps as registry
from pipeline.cache import Cache, code_hash, inputs_digest, packages_hash, sections_json, sha
from pipeline.config import Config, resolve
from pipeline.files import digest, remove, write_json
from pipeline.steps.base import Context, Step, StepResult, say


def execute(ctx: Context, step: Step, options: dict[str, Any], cache: Cache | None = None) -> tuple[int, StepResult]:
    """Run one step: clear stale outputs, run, write its result; the cache forgets what it cleared."""
    side = step.check_only_option and options.get(step.check_only_option)
    target = ctx.output(f"{step.name}-{step.check_only_option}.json") if side else ctx.output(step.result_file)
    if side:
        remove(target)
    else:
        cleared = registry.downstream(step.name) or (step,)
        for later in cleared:
            for name in later.writes:
                remove(ctx.output(name))
        (cache or Cache(ctx.paths.cache)).forget(*(s.name for s in cleared))
    code, result = step.run(ctx, **options)
    write_json(target, result.model_dump(mode="json"))
    for line in result.summary_lines():
        say(line)
    return code, result


def run_one(config: Config, name: str, options: dict[str, Any]) -> tuple[int, StepResult]:
    """`mlops <step>`: always runs (the user asked), and keeps the cache honest about it."""
    step = registry.get(name)
    ctx = Context(config)
    cache = Cache(ctx.paths.cache)
    code, result = execute(ctx, step, options, cache)
    if step.in_run and not (step.check_only_option and options.get(step.check_only_option)):
        key = step_key(ctx, step, upstream=_recorded_upstream(cache, step), extra=_extra(ctx, step, options, cache))
        cache.record(ctx, step, key, code=code)
    return code, result


def _recorded_upstream(cache: Cache, step: Step) -> str:
    names = [s.name for s in registry.RUN_STEPS]
    index = names.index(step.name)
    return str(cache.steps.get(names[index - 1], {}).get("key", "")) if index else ""


def step_key(ctx: Context, step: Step, upstream: str, extra: str = "") -> str:
    if "keys:shared" not in ctx.memo:  # the same for every step of one command
        ctx.memo["keys:shared"] = (code_hash(), packages_hash())
    code, packages = ctx.memo["keys:shared"]
    return sha(step.name, upstream, code, packages, sections_json(ctx.config, step), inputs_digest(ctx, step), extra)


def _extra(ctx: Context, step: Step, options: dict[str, Any], cache: Cache) -> str:
    """What a step's result depends on beyond its config, inputs and code."""
    if step.name == "evaluate":
        return champion_identity(ctx, options.get("champion"), cache)
    if step.name == "train":  # where it trains (RAY_ADDRESS, see pipeline/cluster.py) is in train.json
        return os.environ.get("RAY_ADDRESS", "").strip()
    return ""


def champion_identity(ctx: Context, override: str | None, cache: Cache) -> str:
    """What identifies the champion evaluate compares against.

    With MLOPS_MODEL_REGISTRY set, that registry is asked for the `champion` digest every time
    (it is the champion evaluate loads, and another merge may move it at any moment). Otherwise
    MLflow is asked unless the local store is byte-for-byte what it was right after our last
    write (then its answer from that moment still holds).
    """
    from pipeline import registry as model_registry

    config = ctx.config
    if override:
        return "path:" + digest(Path(override))
    repo = model_registry.configured()
    if repo is not None:
        client = model_registry.connect(repo)
        return f"oci:{repo}@{model_registry.resolve(client, model_registry.CHAMPION)}"
    fallback = config.evaluate.champion
    path = "path:" + (digest(resolve(config, fallback.path)) if fallback and fallback.path else "none")
    return f"registry:{known_aliases(config, cache).get('champion')}|{path}"


def known_aliases(config: Config, cache: Cache) -> dict[str, str | None]:
    """The registry's `champion` and `challenger` versions, from the cache's memo when still true."""
    from pipeline import tracking

    fingerprint = tracking.registry_fingerprint(config)
    memo = cache.registry
    if fingerprint is not None and memo.get("fingerprint") == fingerprint:
        return {"champion": memo.get("champion"), "challenger": memo.get("challenger")}
    aliases = {"champion": tracking.alias_version(config, tracking.CHAMPION),
               "challenger": tracking.alias_version(config, tracking.CHALLENGER)}
    remember_registry(config, cache, aliases)
    return aliases


def remember_registry(config: Config, cache: Cache, aliases: dict[str, str | None]) -> None:
    from pipeline import tracking

    fingerprint = tracking.registry_fingerprint(config)
    cache.registry = {"fingerprint": fingerprint, **aliases} if fingerprint is not None else {}
    cache.save()


TRAINS = ("validate", "train")  # a run that executes one of these will train and talk to MLflow


def _line(index: int, total: int, name: str, message: str) -> None:
    say(f"[{index}/{total}] {name:<9} {message}")


def run_all(config: Config, force: bool = False, champion: str | None = None) -> tuple[int, dict[str, StepResult]]:
    """The pull-request path: validate, train, evaluate, report, then register `challenger`.

    Returns the worst exit code (1 when validation or any model test failed) and the results of
    the steps that ran this time.
    """
    with ExitStack() as tracking_process:  # MLflow's own process, from the moment the run will train
        return _run_steps(config, force, champion, tracking_process)


def _run_steps(config: Config, force: bool, champion: str | None,
               tracking_process: ExitStack) -> tuple[int, dict[str, StepResult]]:
    started = time.perf_counter()
    ctx = Context(config)
    cache = Cache(ctx.paths.cache)
    upstream, worst, results = "", 0, {}
    ran: list[str] = []
    total = len(registry.RUN_STEPS) + 1
    tracking_started = force or not all(cache.steps.get(name) for name in TRAINS)  # it will train: no need for keys
    if tracking_started:
        _start_tracking(config, tracking_process)
    for index, step in enumerate(registry.RUN_STEPS, start=1):
        options = {"champion": champion} if step.name == "evaluate" else {}
        key = step_key(ctx, step, upstream, _extra(ctx, step, options, cache))
        upstream = key
        entry = None if force else cache.hit(ctx, step, key)
        if entry is not None:
            _line(index, total, step.name, f"cache hit: nothing changed, skipped (last exit {entry['code']})")
            code = int(entry["code"])
        else:
            t0 = time.perf_counter()
            if step.name in TRAINS and not tracking_started:  # the cache says it trains after all
                tracking_started = True
                _start_tracking(config, tracking_process)
            _line(index, total, step.name, "running")
            code, results[step.name] = execute(ctx, step, options, cache)
            cache.record(ctx, step, key, code=code, seconds=round(time.perf_counter() - t0, 3))
            ran.append(step.name)
            _line(index, total, step.name, f"{'ok' if code == 0 else 'FAILED'} in {time.perf_counter() - t0:.2f}s")
        worst = max(worst, code)
        if step.name == "validate" and code != 0:
            _line(index, total, "run", "stopped: data validation failed, nothing after it runs")
            return code, results
    registered = _register(ctx, cache, upstream, total)
    if registered is not None:
        results["promote"] = registered
        ran.append("register")
    verb = "ran " + ", ".join(ran) if ran else "nothing changed: every step was a cache hit"
    say(f"mlops run: {verb}; {time.perf_counter() - started:.2f}s; report: {ctx.paths.report_md}")
    return worst, results


def _start_tracking(config: Config, tracking_process: ExitStack) -> None:
    """MLflow's process, started as early as the run knows it will train: it needs longer to get
    ready (MLflow, its store, skops) than this process needs to validate and fit. While this
    process then waits for it, it imports matplotlib for the report (`charts.preload`)."""
    from pipeline import charts, tracking_worker

    worker = tracking_process.enter_context(tracking_worker.started(config))
    if worker is not None:
        worker.when_idle(charts.preload)


def _register(ctx: Context, cache: Cache, upstream: str, total: int) -> StepResult | None:
    """End of the run: the trained model is registered under alias `challenger` (promote's
    challenger-only mode). Skipped when the registry still holds what we registered last."""
    step = registry.get("promote")
    key = sha("register", upstream, digest(ctx.output("train.json")))
    entry = cache.steps.get("register")
    if entry and entry.get("key") == key and known_aliases(ctx.config, cache).get("challenger") == entry.get("version"):
        _line(total, total, "register", f"cache hit: version {entry['version']} is already `challenger`")
        return None
    from pipeline import tracking

    t0 = time.perf_counter()
    code, result = step.run(ctx, challenger_only=True, publish=False)
    version = str(result.version)  # type: ignore[attr-defined]
    champion = tracking.alias_version(ctx.config, tracking.CHAMPION)
    remember_registry(ctx.config, cache, {"champion": champion, "challenger": version})
    cache.steps["register"] = {"key": key, "code": code, "version": version}
    cache.save()
    write_json(ctx.output(step.result_file), result.model_dump(mode="json"))
    _line(total, total, "register",
          f"{ctx.config.registered_model} version {version} is `challenger` ({time.perf_counter() - t0:.2f}s)")
    return result
