"""The step cache of `mlops run` (`.mlops/cache.json`): skip a step only when nothing it depends
on changed and what it wrote last time is still there, unchanged.

A step's key covers: the step before it (so a change upstream re-runs everything after it), every
Python file of `pipeline/` and `model/` (whatever a forker adds or imports there), the installed
package versions, the step's config sections, the content of the files it reads (the data, the
outputs of earlier steps) and, for evaluate, the champion it compares against. A hit also needs
the outputs recorded by the last successful run to be present with the same content. Failed and
crashed steps are never recorded; a damaged cache file is discarded with a warning.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.files import digest, file_hash, write_json
from pipeline.steps.base import Context, Step

CODE_ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("pipeline", "model")
FORMAT = 2


def sha(*parts: str) -> str:
    value = hashlib.sha256()
    for part in parts:
        value.update(part.encode())
        value.update(b"\0")
    return value.hexdigest()


def code_hash(root: Path = CODE_ROOT) -> str:
    """Every .py file under pipeline/ and model/: names and contents."""
    files = sorted(p for package in CODE_PACKAGES for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    return sha(*(f"{p.relative_to(root)}={file_hash(p)}" for p in files))


def packages_hash() -> str:
    """Every installed distribution and its version (an upgrade re-runs the pipeline)."""
    found = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in metadata.distributions()})
    return sha(sys.version, *found)


def sections_json(config: Config, step: Step) -> str:
    dumped = config.model_dump(mode="json", by_alias=True)
    return json.dumps({name: dumped.get(name) for name in ("task", "seed", *step.sections)}, sort_keys=True)


def inputs_digest(ctx: Context, step: Step) -> str:
    parts = [f"{name}={digest(ctx.output(name))}" for name in step.reads]
    if step.reads_data:
        parts += [f"{path}={ctx.file_hash(path) if path.is_file() else 'missing'}" for path in ctx.data_files()]
    return sha(*parts)


class Cache:
    """Per step: the key it last succeeded with, its exit code and its outputs' digests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, dict[str, Any]] = {}
        self.registry: dict[str, Any] = {}  # what the local registry held after our last write to it
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT}")
            self.steps, self.registry = dict(raw["steps"]), dict(raw.get("registry") or {})
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            print(f"warning: {self.path}: unreadable step cache discarded ({exc}); every step runs", file=sys.stderr, flush=True)
            self.steps, self.registry = {}, {}

    def hit(self, ctx: Context, step: Step, key: str) -> dict[str, Any] | None:
        entry = self.steps.get(step.name)
        if not entry or entry.get("key") != key:
            return None
        recorded = entry.get("outputs") or {}
        if set(recorded) != set(step.writes):
            return None
        if any(digest(ctx.output(name)) != value for name, value in recorded.items()):
            return None
        return entry

    def record(self, ctx: Context, step: Step, key: str, **values: Any) -> None:
        outputs = {name: digest(ctx.output(name)) for name in step.writes}
        self.steps[step.name] = {"key": key, "outputs": outputs, **values}
        self.save()

    def forget(self, *names: str) -> None:
        if any(self.steps.pop(name, None) is not None for name in names):
            self.save()

    def save(self) -> None:
        write_json(self.path, {"format": FORMAT, "steps": self.steps, "registry": self.registry})
