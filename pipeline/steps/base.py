"""What a step is: its one declaration, the context it runs in, and the shape of its result.

A `Step` names everything the rest of the machinery derives from it: the CLI subcommand and its
options (`pipeline.cli`), the order and cache keys of `mlops run` (`pipeline.runner`,
`pipeline.cache`), the files it reads and writes, and the GitHub Action outputs taken from its
typed result (`pipeline.github`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.config import Config, resolve
from pipeline.errors import PipelineError
from pipeline.files import file_hash
from pipeline.paths import Paths


@dataclass(frozen=True)
class Option:
    """One CLI option of a step (`--flag`); `dest` is the keyword the step's run reads."""

    flag: str
    help: str
    is_switch: bool = False
    metavar: str | None = None
    required: bool = False

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Annotation:
    """A problem for GitHub: level, message and, when known, the file and line it concerns."""

    level: str  # "error" | "warning"
    message: str
    file: str | None = None
    line: int | None = None
    config_key: str | None = None  # a dotted mlops.yaml key; resolved to a line by pipeline.github


class StepResult(BaseModel):
    """Base of every step's typed result, written as JSON; unknown extra detail is kept as is."""

    model_config = ConfigDict(extra="allow")

    def annotations(self) -> list[Annotation]:
        return []

    def summary_lines(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Step:
    """One pipeline step, declared once.

    Args:
        name: the word shared by the CLI subcommand, the config section, the module and the
            `actions/<name>/` folder.
        help: one line for `mlops --help`.
        sections: the mlops.yaml sections the step reads (with `task` and `seed`, its config key).
        reads: outputs (under outputs/) of earlier steps it reads.
        writes: outputs it writes; removed when it or an earlier step fails.
        result: its typed result model; `result_file` is where that is written.
        run: the function: `run(ctx, **options) -> (exit code, result)`.
        options: its CLI options.
        reads_data: whether the configured data files are inputs (their content enters the key).
        action_outputs: GitHub Action output name -> result field ("@" + name: that file's path).
        in_run: part of `mlops run`.
        failure_code: the exit code for bad input (1 unless the step uses 1 for a finding).
        check_only_option: an option that turns the step into a side check of another input: its
            result goes to `<name>-<option>.json`, and neither the cache nor other outputs change.
    """

    name: str
    help: str
    sections: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    result: type[StepResult]
    result_file: str
    run: Callable[..., tuple[int, StepResult]]
    options: tuple[Option, ...] = ()
    reads_data: bool = False
    action_outputs: dict[str, str] = field(default_factory=dict)
    in_run: bool = True
    failure_code: int = 1
    check_only_option: str | None = None


@dataclass
class Context:
    """Config, paths and what one command's steps share: data frames read once, hashes computed
    once, and the model train fitted (evaluate scores it without reloading it)."""

    config: Config
    memo: dict[str, Any] = field(default_factory=dict)
    trained: Any = None

    @property
    def paths(self) -> Paths:
        return Paths(self.config.root)

    @property
    def data_path(self) -> Path:
        return resolve(self.config, self.config.data.path)

    def data_files(self) -> list[Path]:
        ref = self.config.data.reference
        return [self.data_path] + ([resolve(self.config, ref)] if ref is not None else [])

    def table(self, path: Path) -> Any:
        from pipeline.data import read_table

        key = f"table:{path}"
        if key not in self.memo:
            self.memo[key] = read_table(path, self.config)
        return self.memo[key]

    def data(self) -> Any:
        return self.table(self.data_path)

    def reference(self) -> Any:
        ref = self.config.data.reference
        return self.table(resolve(self.config, ref)) if ref is not None else None

    def file_hash(self, path: Path) -> str:
        key = f"hash:{path}"
        if key not in self.memo:
            self.memo[key] = file_hash(path)
        return self.memo[key]

    def output(self, name: str) -> Path:
        return self.paths.outputs / name

    def read_result(self, model: type[StepResult], name: str, needed_by: str) -> Any:
        """An earlier step's result, typed; a clear error when it is missing or unreadable."""
        path = self.output(name)
        if not path.is_file():
            raise PipelineError(f"{needed_by}: {path} not found; run `mlops {name.split('.')[0]}` first")
        try:
            return model.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PipelineError(f"{needed_by}: {path} is not a valid result ({type(exc).__name__}); run `mlops run`") from None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
