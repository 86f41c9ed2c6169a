"""What a command tells GitHub Actions, taken from the steps' typed results (never from text
output): `::error`/`::warning` annotations on the file and line a problem concerns, a section of
the job summary, and the step outputs declared by each step (`Step.action_outputs`).

Called by the CLI when GITHUB_ACTIONS=true, so a composite action only runs `mlops <step>`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.paths import Paths
from pipeline.steps.base import Annotation

SUMMARY_LINES = 50  # problem lines shown in the job summary; the log has them all


def publish(command: str, config_path: str, results: dict[str, Any], error: PipelineError | None, code: int,
            result_file: str, action_outputs: dict[str, str]) -> None:
    """Annotations, job summary and outputs for `mlops <command>`, whose declared outputs
    (`action_outputs`, see `Step.action_outputs`) are read from `result_file`."""
    config = Path(config_path)
    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or os.getcwd())
    found = [a for result in results.values() if result is not None for a in result.annotations()]
    if error is not None:
        found.append(Annotation("error", str(error), file=error.file, line=error.line, config_key=error.config_key))
        code = error.exit_code
    located = [locate(a, config, workspace) for a in found]
    for item in located:
        print(command_line(item, f"mlops {command}"), flush=True)
    outputs_dir = Paths(config.resolve().parent).outputs
    append("GITHUB_STEP_SUMMARY", summary_markdown(command, code, located, outputs_dir))
    write_outputs({"exit-code": str(code), **step_outputs(outputs_dir / result_file, action_outputs)})


def locate(item: Annotation, config: Path, workspace: Path) -> Annotation:
    """The annotation with a workspace-relative file and a line (a config key becomes its mlops.yaml line)."""
    if item.file:
        return Annotation(item.level, item.message, _relative(Path(item.file), workspace), item.line)
    line = yaml_line(config, item.config_key) if item.config_key else None
    return Annotation(item.level, item.message, _relative(config, workspace) if config.is_file() else None, line)


def yaml_line(config: Path, dotted: str) -> int | None:
    """1-based line of a dotted key (`evaluate.gates.0`) in the YAML file, or of its deepest
    existing parent; None when the file cannot be read."""
    import yaml

    try:
        node = yaml.compose(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in dotted.split("."):
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def step_outputs(result_path: Path, action_outputs: dict[str, str]) -> dict[str, str]:
    """The declared action outputs, read from the result file the command wrote ('' when absent)."""
    import json

    outputs_dir = result_path.parent
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = {}
    values = {}
    for name, source in action_outputs.items():
        if source.startswith("@"):
            path = outputs_dir / source[1:]
            values[name] = str(path) if path.exists() else ""
            continue
        value = result.get(source, "") if isinstance(result, dict) else ""
        if value is None:  # unset (e.g. no model registry): empty, as the actions document, never "None"
            value = ""
        if isinstance(value, list):
            value = "\n".join(map(str, value))
        values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def summary_markdown(command: str, code: int, problems: list[Annotation], outputs_dir: Path) -> str:
    """The command's section of the job summary; `report` and `run` contribute the whole report."""
    report = outputs_dir / "report.md"
    if command in ("report", "run") and report.is_file():
        return report.read_text(encoding="utf-8") + "\n"
    mark, word = ("✅", "passed") if code == 0 else ("❌", f"failed (exit {code})")
    lines = [f"### {mark} `mlops {command}` {word}", ""]
    shown = [p for p in problems if p.level == "error"] or problems
    for item in shown[:SUMMARY_LINES]:
        where = f" (`{item.file}" + (f":{item.line}" if item.line else "") + "`)" if item.file else ""
        lines.append(f"- **{item.level}**: {item.message}{where}")
    if len(shown) > SUMMARY_LINES:
        lines.append(f"- … and {len(shown) - SUMMARY_LINES} more in the log")
    return "\n".join(lines) + "\n\n"


def command_line(item: Annotation, title: str) -> str:
    """The workflow command for one annotation (values escaped as the runner expects)."""
    props = [f"title={_escape_property(title)}"]
    if item.file:
        props.insert(0, f"file={_escape_property(item.file)}")
        if item.line:
            props.insert(1, f"line={item.line}")
    return f"::{item.level} {','.join(props)}::{_escape_data(item.message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _relative(path: Path, workspace: Path) -> str:
    try:
        return str(path.resolve().relative_to(workspace.resolve()))
    except ValueError:
        return str(path)


def append(env_name: str, text: str) -> None:
    target = os.environ.get(env_name)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text)


def write_outputs(values: dict[str, str]) -> None:
    """`name=value` lines; a multi-line value in GitHub's `name<<DELIMITER` form."""
    text = []
    for name, value in values.items():
        if "\n" not in value and "\r" not in value:
            text.append(f"{name}={value}\n")
            continue
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        text.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    append("GITHUB_OUTPUT", "".join(text))
