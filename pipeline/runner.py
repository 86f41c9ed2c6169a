"""`mlops run`: validate -> train -> evaluate -> report -> register `challenger`, with a
content-hash cache per step.

A step's key hashes its upstream key, its config sections, its code files and (for validate)
the data; evaluate also keys on the champion it compares against. A step whose key and outputs
are unchanged is skipped and says so; a warm run imports no ML library at all.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config, resolve
from pipeline.dag import SHARED_CODE, STEPS, Step
from pipeline.paths import Paths
from pipeline.promote import local_aliases
from pipeline.tracking import file_hash

CODE_ROOT = Path(__file__).resolve().parents[1]


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    return file_hash(path) if path.exists() else "missing"


def champion_fingerprint(config: Config, override: str | None) -> str:
    """What identifies the champion without importing MLflow; 'volatile' when it cannot be known."""
    paths = Paths(config.root)
    if override:
        return "path:" + _file_digest(Path(override) / "MLmodel")
    if paths.tracking_uri != paths.local_tracking_uri:
        return f"volatile:{time.time()}"  # a remote registry may move `champion` at any time
    registry = str((local_aliases(config) or {}).get("champion"))
    spec = config.evaluate.champion
    fallback = _file_digest(resolve(config, spec.path) / "MLmodel") if spec and spec.path else "none"
    return f"registry:{registry}|path:{fallback}"


def step_key(config: Config, step: Step, upstream: str, extra: str = "") -> str:
    dumped = config.model_dump(mode="json", by_alias=True)
    sections = json.dumps({name: dumped.get(name) for name in ("task", "seed", *step.sections)}, sort_keys=True)
    code = [f"{rel}={_file_digest(CODE_ROOT / rel)}" for rel in (*SHARED_CODE, *step.code)]
    data = ""
    if step.name == "validate":
        files = [resolve(config, config.data.path)] + ([resolve(config, config.data.reference)] if config.data.reference else [])
        data = "|".join(_file_digest(f) for f in files)
    return _sha(step.name, upstream, sections, *code, data, extra)


class Cache:
    """`.mlops/cache.json`: per step, the key it last ran with and its exit code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def hit(self, step: str, key: str, outputs: Path, writes: tuple[str, ...]) -> dict[str, Any] | None:
        entry = self.entries.get(step)
        if entry and entry.get("key") == key and all((outputs / name).exists() for name in writes):
            return entry
        return None

    def store(self, step: str, key: str, **values: Any) -> None:
        self.entries[step] = {"key": key, **values}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.entries, indent=2, sort_keys=True))

    def forget(self, step: str) -> None:
        if self.entries.pop(step, None) is not None:
            self.path.write_text(json.dumps(self.entries, indent=2, sort_keys=True))


def _line(index: int, total: int, name: str, message: str) -> None:
    print(f"[{index}/{total}] {name:<9} {message}", file=sys.stderr, flush=True)


def run_all(config_path: str | Path, force: bool = False, champion_path: str | None = None) -> int:
    """The pull-request path. Returns 1 when validation or any model test failed."""
    started = time.perf_counter()
    config = load_config(config_path)
    paths = Paths(config.root)
    cache = Cache(paths.cache)
    workspace = None
    upstream, worst, ran = "", 0, []
    total = len(STEPS) + 1
    for index, step in enumerate(STEPS, start=1):
        extra = champion_fingerprint(config, champion_path) if step.name == "evaluate" else ""
        key = step_key(config, step, upstream, extra)
        upstream = key
        entry = None if force else cache.hit(step.name, key, paths.outputs, step.writes)
        if entry is not None:
            _line(index, total, step.name, f"cache hit: nothing changed, skipped (last exit {entry['code']})")
            code = entry["code"]
        else:
            if workspace is None:
                from pipeline.steps import Workspace

                workspace = Workspace(config)
            t0 = time.perf_counter()
            _line(index, total, step.name, "running")
            code = _run_step(step.name, config, workspace, champion_path)
            cache.store(step.name, key, code=code, seconds=round(time.perf_counter() - t0, 3))
            ran.append(step.name)
            _line(index, total, step.name, f"{'ok' if code == 0 else 'FAILED'} in {time.perf_counter() - t0:.2f}s")
        worst = max(worst, code)
        if step.name == "validate" and code != 0:
            _line(index, total, "run", "stopped: data validation failed, nothing after it runs")
            return code
    worst = max(worst, _register(config, cache, upstream, total))
    verb = "ran " + ", ".join(ran) if ran else "nothing changed: every step was a cache hit"
    print(f"mlops run: {verb}; {time.perf_counter() - started:.2f}s; report: {paths.report_md}", file=sys.stderr)
    return worst


def _run_step(name: str, config: Config, workspace: Any, champion_path: str | None) -> int:
    from pipeline import steps

    if name == "validate":
        return steps.run_validate(config, ws=workspace)
    if name == "train":
        return steps.run_train(config, ws=workspace)
    if name == "evaluate":
        return steps.run_evaluate(config, champion_path=champion_path, ws=workspace)
    return steps.run_report(config, ws=workspace)


def _register(config: Config, cache: Cache, upstream: str, total: int) -> int:
    """End of the run: the trained model is registered under alias `challenger`."""
    paths = Paths(config.root)
    key = _sha("register", upstream, _file_digest(paths.outputs / "train.json"))
    entry = cache.hit("register", key, paths.outputs, ("train.json",))
    if entry and (local_aliases(config) or {}).get("challenger") == entry.get("version"):
        _line(total, total, "register", f"cache hit: version {entry['version']} is already `challenger`")
        return 0
    from pipeline import tracking
    from pipeline.promote import register_challenger
    from pipeline.steps import read_output, Workspace

    t0 = time.perf_counter()
    tracking.configure(config)
    version = register_challenger(config, read_output(Workspace(config), "train.json", "register"))
    cache.store("register", key, code=0, version=version)
    _line(total, total, "register", f"{config.registered_model} version {version} is `challenger` ({time.perf_counter() - t0:.2f}s)")
    return 0
