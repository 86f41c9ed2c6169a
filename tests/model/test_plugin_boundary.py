"""model/ is a sealed plug-in: it imports nothing from the machinery around it (pipeline/,
actions/, tests/), checked in the source (every .py, new files too) and at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("pipeline", "actions", "tests")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, wherever it sits (TYPE_CHECKING, functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_file_in_model_imports_the_machinery():
    files = sorted((REPO / "model").rglob("*.py"))
    assert files, "model/ has no Python files"
    offending = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for path in files
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert not offending, "model/ must import nothing from pipeline/, actions/ or tests/:\n" + "\n".join(offending)


def test_the_scan_catches_a_forbidden_import(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.config import Config\n")
    assert imported_modules(sneaky) == [(1, "typing"), (3, "pipeline.config")]


def test_building_and_fitting_a_model_loads_no_pipeline_module():
    script = """
import sys
import pandas as pd
import model
from model import ModelSpec, build_model, requirements, trusted_types
spec = ModelSpec(task="classification", numeric=("x",), categorical=("c",), estimator="random_forest",
                 params={"n_estimators": 5}, seed=1)
frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
build_model(spec).fit(frame, ["p", "q", "p", "q"])
requirements(spec), trusted_types(spec)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("pipeline", "actions", "tests"))
print(",".join(loaded) or "none")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
