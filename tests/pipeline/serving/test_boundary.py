"""The serving runtime's import boundary: it imports neither MLflow nor any other `pipeline`
module (config, steps, train, tracking, delivery, ...), so the image can ship `pipeline/serving/`
alone and a change to the training code cannot break or bloat the server.

Each check runs in a fresh interpreter started the way the image starts one: `python -S` with
only the staged app (`pipeline.delivery.build.stage_app`, the very copy the image gets) and the
installed packages on the path. An import of a pipeline module the image lacks fails there, and
`sys.modules` shows everything else that was pulled in.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

RUNTIME_MODULES = ["pipeline.serving.app", "pipeline.serving.server", "pipeline.serving.predictor",
                   "pipeline.serving.compile", "pipeline.serving.settings", "pipeline.serving.metrics"]
NEVER = ("mlflow",)  # the image has no MLflow
NOT_AT_IMPORT = ("sklearn", "skops", "scipy", "pandas")  # ready on the NumPy fast path before these load


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.delivery.build import stage_app

    return stage_app(tmp_path_factory.mktemp("image") / "app")


def run_as_image(app: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with only the staged `app` and the installed packages importable (no repo, no
    editable install); it prints the names in sys.modules as its last line."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    path = os.pathsep.join([str(app), *site.getsitepackages()])
    return subprocess.run([sys.executable, "-S", "-c", script], cwd=app.parent, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=120)


def modules_after(app: Path, code: str) -> list[str]:
    result = run_as_image(app, code)
    assert result.returncode == 0, f"the runtime needs something the image does not have:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def breaches(modules: list[str], banned: tuple[str, ...]) -> list[str]:
    """Top-level banned packages, and pipeline modules outside pipeline.serving."""
    outside = [name for name in modules if name.startswith("pipeline.") and not f"{name}.".startswith("pipeline.serving.")]
    return sorted([name for name in modules if name in banned] + outside)


def test_importing_the_runtime_pulls_in_no_mlflow_no_pipeline_code_and_no_scikit_learn(app_dir: Path) -> None:
    modules = modules_after(app_dir, "\n".join(f"import {name}" for name in RUNTIME_MODULES))
    assert set(RUNTIME_MODULES) <= set(modules)
    assert breaches(modules, NEVER + NOT_AT_IMPORT) == []


def test_compiling_loading_and_serving_pull_in_no_mlflow_and_no_pipeline_code(app_dir: Path, model_dir: Path, contract,
                                                                            good_row: dict, tmp_path: Path) -> None:
    """The image build's compile step, then both loaders (fast path and scikit-learn) behind the
    app answering /ready and /predict: everything the runtime imports lazily too."""
    from pipeline.serving.contract import write

    model = shutil.copytree(model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("fastpath.*"))
    contract_path = write(contract, tmp_path / "contract.json")
    code = f"""
import asyncio
from pathlib import Path
import httpx
from pipeline.serving import compile, contract, predictor
from pipeline.serving.app import create_app
from pipeline.serving.settings import Settings
model, served = Path({str(model)!r}), contract.load({str(contract_path)!r})
assert compile.main([str(model), {str(contract_path)!r}]) == 0
async def check(app):
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://app") as client:
        assert (await client.get("/ready")).status_code == 200
        answer = await client.post("/predict", json={{"rows": [{good_row!r}]}})
        assert answer.status_code == 200, answer.text
for loaded in (predictor.load_compiled(model, served), predictor.load(model, served)):
    assert loaded is not None
    asyncio.run(check(create_app(Settings(model_dir=model), served, loaded)))
"""
    modules = modules_after(app_dir, code)
    assert "sklearn" in modules and "skops" in modules  # the scikit-learn path really ran
    assert breaches(modules, NEVER) == []


def test_the_checks_fail_when_the_runtime_grows_such_an_import(app_dir: Path, tmp_path: Path) -> None:
    """Shown on a copy of the staged app: an MLflow import is seen in sys.modules, an import of
    the training code fails outright because the image does not have it."""
    broken = shutil.copytree(app_dir, tmp_path / "app")
    settings = broken / "pipeline" / "serving" / "settings.py"
    original = settings.read_text()

    settings.write_text(original + "\nimport mlflow  # noqa: E402\n")
    assert breaches(modules_after(broken, "import pipeline.serving.app"), NEVER) == ["mlflow"]

    settings.write_text(original + "\nfrom pipeline import config  # noqa: E402\n")
    result = run_as_image(broken, "import pipeline.serving.app")
    assert result.returncode != 0 and "cannot import name 'config' from 'pipeline'" in result.stderr
