"""The house-keeping tools: ruff and mypy at zero findings with the settings in pyproject.toml, a
valid pre-commit config whose hooks run the venv's (locked) tools, and the LICENSE pyproject
declares. The tools come from the test extra, at the versions in requirements.txt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRE_COMMIT = REPO / ".pre-commit-config.yaml"
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
EXACT_TAG = re.compile(r"^v?\d+(\.\d+)+([.-]?[A-Za-z0-9]+)*$")  # v1.2.3, 0.17.6, 1.2.3-rc1; not `main`


def tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed beside {sys.executable}; `bash tests/setup.sh` provides it")
    return str(path)


def run(*cmd: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def test_ruff_has_no_findings() -> None:
    result = run(tool("ruff"), "check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, f"ruff check .\n{result.stdout}{result.stderr}"


def test_mypy_has_no_findings() -> None:
    """mypy over the files pyproject.toml's [tool.mypy] names (pipeline, model, actions, benchmarks)."""
    result = run(tool("mypy"), "--no-incremental")
    assert result.returncode == 0, f"mypy\n{result.stdout}{result.stderr}"


def test_ruff_and_mypy_are_configured_in_pyproject() -> None:
    tools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]
    assert {"E", "F", "I", "B", "UP"} <= set(tools["ruff"]["lint"]["select"])
    assert {"pipeline", "model"} <= set(tools["mypy"]["files"])


def test_pre_commit_config_is_valid() -> None:
    result = run(tool("pre-commit"), "validate-config", str(PRE_COMMIT))
    assert result.returncode == 0, result.stdout + result.stderr


def test_pre_commit_pins_every_remote_hook_and_runs_local_ones_from_the_venv() -> None:
    config = yaml.safe_load(PRE_COMMIT.read_text())
    ids = set()
    for repo in config["repos"]:
        if repo["repo"] in {"local", "meta"}:
            for hook in repo["hooks"]:
                program = hook["entry"].split()[0]
                assert (BIN / program).is_file(), f"hook {hook['id']}: {program} is not in this venv (add it to the test extra)"
        else:
            rev = str(repo.get("rev", ""))
            assert FULL_SHA.match(rev) or EXACT_TAG.match(rev), f"{repo['repo']}: rev {rev!r} is no full commit SHA or exact tag"
        ids |= {hook["id"] for hook in repo["hooks"]}
    assert {"ruff", "mypy", "actionlint", "zizmor"} <= ids


def test_pre_commit_hooks_run() -> None:
    """The workflow linters through pre-commit itself, as a contributor's commit runs them."""
    result = run(tool("pre-commit"), "run", "--all-files", "--show-diff-on-failure", "actionlint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout


def test_license_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    text = (REPO / "LICENSE").read_text()
    assert declared == "MIT" and text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text
