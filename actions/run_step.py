"""Glue between a composite action and one `mlops` subcommand; standard library only.

Every `actions/<step>/action.yml` calls this file twice and holds no logic itself:

    python run_step.py install SOURCE [--extras serve]     # pip install -e the package, once per job
    python run_step.py STEP [--config mlops.yaml] [-- MLOPS_ARGS...]
    python run_step.py drift-verdict --validate-code N --drift-code N [--config mlops.yaml]
    python run_step.py credentials     # deploy: KUBECONFIG_DATA, SSH_KEY, KNOWN_HOSTS from the env

The second form runs `mlops --config CONFIG STEP MLOPS_ARGS`, streams its output, and then
translates the result for GitHub: `::error`/`::warning` annotations pointing at the file and line
they concern (mlops.yaml or the data file), a section in `$GITHUB_STEP_SUMMARY`, and the step's
outputs in `$GITHUB_OUTPUT`. It exits with mlops' own exit code, so a failed gate fails the step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

# What each step exposes as action outputs: output name -> (file under outputs/, JSON key).
# A key of None exposes the file's path itself; a list becomes one item per line.
STEP_OUTPUTS: dict[str, dict[str, tuple[str, str | None]]] = {
    "validate": {"passed": ("validate.json", "passed"), "result": ("validate.json", None)},
    "train": {"run-id": ("train.json", "run_id"), "model-dir": ("train.json", "model_dir"), "result": ("train.json", None)},
    "evaluate": {"passed": ("evaluate.json", "passed"), "result": ("evaluate.json", None)},
    "report": {"verdict": ("summary.json", "verdict"), "report": ("report.md", None), "summary": ("summary.json", None)},
    "promote": {"model-version": ("promote.json", "version"), "moved": ("promote.json", "moved"), "result": ("promote.json", None)},
    "run": {"verdict": ("summary.json", "verdict"), "report": ("report.md", None), "summary": ("summary.json", None)},
    # `mlops build --context DIR` (stage only) fills context..secret-files for docker/build-push-action
    "build": {"model-version": ("build.json", "model_version"), "result": ("build.json", None),
              "context": ("build.json", "context"), "repository": ("build.json", "repository"),
              "build-args": ("build.json", "build_args"), "labels": ("build.json", "labels"),
              "secret-files": ("build.json", "secret_files"), "base-image": ("build.json", "base_image"),
              "git-sha": ("build.json", "git_sha")},
    "deploy": {},
    "drift": {"result": ("drift.json", None)},
}
SUMMARY_LINES = 50  # problem lines shown in the job summary; the log has them all
STAMP = "mlops-installed.txt"


@dataclass(frozen=True)
class Annotation:
    level: str  # "error" | "warning"
    message: str
    file: str | None = None
    line: int | None = None

    def command(self, title: str) -> str:
        props = [f"title={_escape_property(title)}"]
        if self.file:
            props.insert(0, f"file={_escape_property(self.file)}")
            if self.line:
                props.insert(1, f"line={self.line}")
        return f"::{self.level} {','.join(props)}::{_escape_data(self.message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# ---------------------------------------------------------------- locating a message's source
_QUOTED = re.compile(r"""['"`]([A-Za-z_][\w.\-]*)['"`]""")
_AFTER_WORD = re.compile(r"\b(?:column|metric|gate|slice|feature|key|test)\s+([A-Za-z_][\w\-]*)", re.IGNORECASE)
_DOTTED = re.compile(r"\b([a-z_]+(?:\.[A-Za-z_][\w\-]*|\[\d+\])+)")
_LINE_NO = re.compile(r"\bline (\d+)\b")
_PATHISH = re.compile(r"([\w./\-]+\.(?:csv|parquet|ya?ml|json))\b")


def yaml_line(config_text: str, names: list[str]) -> int | None:
    """1-based line of the first `name:` key (or `metric|name|column: name` value) in the config."""
    lines = config_text.splitlines()
    for name in names:
        leaf = re.escape(name.split(".")[-1].split("[")[0])
        key = re.compile(rf"^\s*(?:-\s*)?{leaf}\s*:")
        value = re.compile(rf"\b(?:metric|name|column)\s*:\s*['\"]?{leaf}\b")
        for number, text in enumerate(lines, start=1):
            if key.search(text) or value.search(text):
                return number
    return None


def locate(message: str, config: Path, workspace: Path, data_file: Path | None = None) -> tuple[str | None, int | None]:
    """Best guess of the file and line a problem message is about.

    A message naming a file (or, from `validate`, a row by its line number) points at that file
    and line; one naming a config key, a column, a metric or a gate points at that spot in
    mlops.yaml; anything else at mlops.yaml itself.
    """
    line_no = _LINE_NO.search(message)
    for candidate in _PATHISH.findall(message):
        path = Path(candidate)
        path = path if path.is_absolute() else (config.parent / path)
        if path.is_file() and path.resolve() != config.resolve():
            return _relative(path, workspace), int(line_no.group(1)) if line_no else None
    if line_no and data_file is not None and data_file.is_file():
        return _relative(data_file, workspace), int(line_no.group(1))
    names = _DOTTED.findall(message) + _QUOTED.findall(message) + _AFTER_WORD.findall(message)
    text = config.read_text(encoding="utf-8", errors="replace") if config.is_file() else ""
    if not text:
        return None, None
    return _relative(config, workspace), yaml_line(text, names)


def _relative(path: Path, workspace: Path) -> str:
    try:
        return str(path.resolve().relative_to(workspace.resolve()))
    except ValueError:
        return str(path)


# Lines that report progress or a tally, not a problem.
_NOT_A_PROBLEM = re.compile(
    r"^(\[\d+/\d+\]|mlops run:|\$ |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |Successfully registered|Created version|"
    r"\w+: \d+ problem\(s\)|evaluate: (champion:|passed|failed \()|\w+: .*\b(passed|fitted in|verdict:)\b)"
)
_PREFIX = re.compile(r"^(?:(?:internal )?error:\s*)?(?:(?:validate|evaluate|train|report|promote|build|deploy|drift):\s*)?(?:FAIL\s+)?",
                     re.IGNORECASE)


def annotations(stderr_lines: list[str], failed: bool, config: Path, workspace: Path,
                data_file: Path | None = None) -> list[Annotation]:
    """`::warning` for each warning line; `::error` for each problem line of a failed command."""
    found: list[Annotation] = []
    for raw in stderr_lines:
        line = raw.strip()
        if not line or line.startswith("::") or _NOT_A_PROBLEM.match(line):
            continue
        if line.lower().startswith("warning:"):
            message = line.split(":", 1)[1].strip()
            found.append(Annotation("warning", message, *locate(message, config, workspace, data_file)))
        elif failed:
            message = _PREFIX.sub("", line, count=1)
            found.append(Annotation("error", message, *locate(message, config, workspace, data_file)))
    return found


# ---------------------------------------------------------------- GitHub files
def step_outputs(step: str, outputs_dir: Path, exit_code: int) -> dict[str, str]:
    """The action outputs of `step`, read from the files it wrote; missing values are ''."""
    values = {"exit-code": str(exit_code)}
    for name, (filename, key) in STEP_OUTPUTS.get(step, {}).items():
        path = outputs_dir / filename
        if key is None:
            values[name] = str(path) if path.exists() else ""
            continue
        try:
            value = json.loads(path.read_text()).get(key, "")
        except (OSError, ValueError, AttributeError):
            value = ""
        if isinstance(value, list):
            value = "\n".join(map(str, value))
        values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def summary_markdown(step: str, exit_code: int, problems: list[Annotation], outputs_dir: Path) -> str:
    """The step's section of the job summary; the report step contributes the whole report."""
    if step in ("report", "run") and (outputs_dir / "report.md").is_file():
        return (outputs_dir / "report.md").read_text(encoding="utf-8") + "\n"
    mark, word = ("✅", "passed") if exit_code == 0 else ("❌", f"failed (exit {exit_code})")
    lines = [f"### {mark} `mlops {step}` {word}", ""]
    for item in problems[:SUMMARY_LINES]:
        where = f" (`{item.file}" + (f":{item.line}" if item.line else "") + "`)" if item.file else ""
        lines.append(f"- **{item.level}**: {item.message}{where}")
    if len(problems) > SUMMARY_LINES:
        lines.append(f"- … and {len(problems) - SUMMARY_LINES} more in the log")
    return "\n".join(lines) + "\n\n"


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


# ---------------------------------------------------------------- commands
def install(source: str, extras: str) -> int:
    """pip install the package from the action's checkout, once per job (a stamp remembers).

    Editable, so the package keeps finding the repository files it uses beside its code
    (infra/ for `build` and `deploy`, the step code the cache keys hash). The checkout's
    requirements.txt lock, when present, pins every dependency (pip constraints).
    """
    root = Path(source).resolve()
    target = f"{root}[{extras}]" if extras else str(root)
    lock = root / "requirements.txt"
    constraints = ["--constraint", str(lock)] if lock.is_file() else []
    stamp = Path(os.environ.get("RUNNER_TEMP", "/tmp")) / STAMP
    done = stamp.read_text().splitlines() if stamp.is_file() else []
    if target in done:
        print(f"mlops already installed from {target}")
        return 0
    code = subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *constraints, "--editable", target])
    if code == 0:
        with stamp.open("a") as handle:
            handle.write(target + "\n")
    else:
        print(f"::error title=mlops install::pip install {target} failed with exit code {code}")
    return code


def data_file(step: str, extra: list[str], outputs_dir: Path) -> Path | None:
    """The data file a step read, for row-level annotations (`--data`, else validate.json's source)."""
    if "--data" in extra and extra.index("--data") + 1 < len(extra):
        return Path(extra[extra.index("--data") + 1])
    for name in ("validate.json",) if step == "validate" else ():
        try:
            return Path(json.loads((outputs_dir / name).read_text())["source"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def run(step: str, config: str, extra: list[str]) -> int:
    """Run `mlops --config CONFIG STEP EXTRA...`, then annotate, summarise and set outputs."""
    config_path = Path(config)
    workspace = Path(os.environ.get("GITHUB_WORKSPACE", os.getcwd()))
    outputs_dir = Path(os.environ.get("MLOPS_OUTPUTS") or config_path.parent / "outputs")
    command = ["mlops", "--config", config, step, *extra]
    print(f"$ {' '.join(command)}", flush=True)
    try:
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    except FileNotFoundError:
        print("::error title=mlops::the `mlops` command is not installed (run the install step first)")
        return 2
    captured: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        captured.append(line.rstrip("\n"))
    exit_code = proc.wait()
    found = annotations(captured, exit_code != 0, config_path, workspace, data_file(step, extra, outputs_dir))
    for item in found:
        print(item.command(f"mlops {step}"), flush=True)
    append("GITHUB_STEP_SUMMARY", summary_markdown(step, exit_code, [a for a in found if a.level == "error"] or found, outputs_dir))
    write_outputs(step_outputs(step, outputs_dir, exit_code))
    return exit_code


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def drift_verdict(outputs_dir: Path, validate_code: str, drift_code: str) -> tuple[bool, list[str]]:
    """Whether incoming data drifted, from validate-data.json and drift.json; problems when it is unusable.

    `mlops drift` exits 1 both on drift and on bad input, so the exit code alone cannot tell a
    retraining case from a broken file: the data must pass `mlops validate --data` (drift
    findings aside, which `validate.drift.on_drift: fail` turns into problems) and drift.json
    must name the drifted features. Anything else is a problem, never "drifted".
    """
    problems: list[str] = []
    validation = _read_json(outputs_dir / "validate-data.json")  # what `mlops validate --data` writes
    if validate_code not in ("0", "1") or validation is None:
        problems.append(f"mlops validate --data refused the file or did not finish (exit code {validate_code or 'none'}, "
                        "no validate-data.json; its errors are above)")
    else:
        for item in validation.get("problems") or []:
            if isinstance(item, dict) and item.get("check") != "drift":
                where = f" column {item.get('column')}" if item.get("column") else ""
                problems.append(f"{item.get('check')}{where}: expected {item.get('expected')}, observed {item.get('observed')}")
        if validate_code == "1" and not problems and not validation.get("problems"):
            problems.append("mlops validate failed without naming a problem")
    if problems:
        return False, problems
    report = _read_json(outputs_dir / "drift.json")
    names = report.get("drifted") if report else None
    if drift_code not in ("0", "1") or not isinstance(names, list):
        return False, [f"mlops drift did not finish (exit code {drift_code or 'none'}, no readable drift.json)"]
    if (drift_code == "1") != bool(names):
        return False, [f"mlops drift exited {drift_code} but drift.json lists {len(names)} drifted features"]
    return bool(names), []


def _verdict(config: str, validate_code: str, drift_code: str) -> int:
    outputs_dir = Path(os.environ.get("MLOPS_OUTPUTS") or Path(config).parent / "outputs")
    drifted, problems = drift_verdict(outputs_dir, validate_code, drift_code)
    for problem in problems:
        print(f"::error title=incoming data::{_escape_data(problem)}")
    write_outputs({"drifted": "true" if drifted else "false"})
    print("drifted: retraining pull request follows" if drifted else ("no drift" if not problems else "incoming data refused"))
    return 1 if problems else 0


def write_credentials(kubeconfig: str, ssh_key: str, known_hosts: str, temp: Path, home: Path) -> dict[str, str]:
    """Put the deploy secrets where kubectl and ssh look; return the variables to export.

    The kubeconfig goes to TEMP/kubeconfig (exported as KUBECONFIG); the SSH key (for a
    DOCKER_HOST=ssh://... swarm manager) to ~/.ssh/id_deploy with the known hosts appended and
    one `IdentityFile` line in ~/.ssh/config, written once. Files are created owner-only (0600,
    ~/.ssh 0700). Empty values write nothing.
    """
    exports: dict[str, str] = {}

    def private(path: Path, text: str, mode: str = "w") -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC), 0o600)
        with os.fdopen(fd, mode, encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        path.chmod(0o600)

    if kubeconfig.strip():
        temp.mkdir(parents=True, exist_ok=True)
        private(temp / "kubeconfig", kubeconfig)
        exports["KUBECONFIG"] = str(temp / "kubeconfig")
    if ssh_key.strip():
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        ssh.chmod(0o700)
        private(ssh / "id_deploy", ssh_key)
        if known_hosts.strip():
            private(ssh / "known_hosts", known_hosts, "a")
        line = "IdentityFile ~/.ssh/id_deploy"
        config = ssh / "config"
        if line not in (config.read_text(encoding="utf-8") if config.is_file() else ""):
            private(config, f"Host *\n  {line}\n", "a")
    return exports


def _credentials() -> int:
    exports = write_credentials(os.environ.get("KUBECONFIG_DATA", ""), os.environ.get("SSH_KEY", ""),
                                os.environ.get("KNOWN_HOSTS", ""), Path(os.environ.get("RUNNER_TEMP", "/tmp")), Path.home())
    append("GITHUB_ENV", "".join(f"{name}={value}\n" for name, value in exports.items()))
    written = [*exports, *(["SSH key"] if os.environ.get("SSH_KEY", "").strip() else [])]
    print(f"deploy credentials written: {', '.join(written) or 'none'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", help="`install` or an mlops subcommand")
    parser.add_argument("source", nargs="?", help="install: the folder holding pyproject.toml")
    parser.add_argument("--config", default="mlops.yaml", help="path to mlops.yaml")
    parser.add_argument("--extras", default="", help="install: extras such as `serve`")
    parser.add_argument("--validate-code", default="", help="drift-verdict: exit code of `mlops validate`")
    parser.add_argument("--drift-code", default="", help="drift-verdict: exit code of `mlops drift`")
    args = parser.parse_args(own)
    if args.step == "credentials":
        return _credentials()
    if args.step == "drift-verdict":
        return _verdict(args.config, args.validate_code, args.drift_code)
    if args.step == "install":
        if not args.source:
            parser.error("install needs SOURCE")
        return install(args.source, args.extras)
    return run(args.step, args.config, extra)


if __name__ == "__main__":
    sys.exit(main())
