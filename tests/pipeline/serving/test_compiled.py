"""The compiled fast path artifact (fastpath.npz + fastpath.json next to the model): it reproduces
scikit-learn after a round trip through disk, a server starts on it without importing
scikit-learn, and a missing, stale, broken or disagreeing artifact is never served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.serving import fastpath, predictor

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def fresh_model(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture model without any compiled artifact."""
    dest = tmp_path / "model"
    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("fastpath.*"))
    return dest


def test_round_trip_equals_scikit_learn(fresh_model: Path, contract) -> None:
    assert predictor.compile_fast_path(fresh_model, contract)
    assert sorted(p.name for p in fresh_model.glob("fastpath.*")) == ["fastpath.json", "fastpath.npz"]
    compiled = predictor.load_compiled(fresh_model, contract)
    assert compiled is not None and compiled.estimator is None and compiled.classes == ["female", "male"]
    reference = predictor.load(fresh_model, contract)
    rows = fastpath.generated_rows(contract, 3000, seed=321) + predictor.warm_up_rows(fresh_model, contract)
    expected = reference._sklearn_values(rows)
    assert np.array_equal(compiled.fast(rows), expected)
    assert np.array_equal(compiled.fast.batch(rows), expected)  # NumPy walk: scikit-learn not loaded yet
    compiled.load_estimator_in_background(fresh_model).join(120)
    assert compiled.estimator is not None and compiled.fast.forest.structures is not None
    assert np.array_equal(compiled.fast.batch(rows), expected)  # scikit-learn's trees
    assert compiled.predict_rows(rows[:5]).predictions == reference.predict(reference.frame(rows[:5])).predictions


def test_missing_stale_or_broken_artifact_falls_back(fresh_model: Path, contract) -> None:
    assert predictor.load_compiled(fresh_model, contract) is None  # missing
    assert predictor.compile_fast_path(fresh_model, contract)
    meta_path = fresh_model / fastpath.ARTIFACT_JSON
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model_sha256": "0" * 64}))  # compiled from another model file
    assert predictor.load_compiled(fresh_model, contract) is None
    meta_path.write_text(json.dumps(meta))
    assert predictor.load_compiled(fresh_model, contract) is not None
    (fresh_model / fastpath.ARTIFACT_NPZ).write_bytes(b"not a zip")
    assert predictor.load_compiled(fresh_model, contract) is None


def test_stale_artifact_is_replaced_at_first_scikit_learn_load(fresh_model: Path, contract) -> None:
    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings
    from tests.pipeline.serving.live import in_thread

    assert predictor.compile_fast_path(fresh_model, contract)
    meta_path = fresh_model / fastpath.ARTIFACT_JSON
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "model_sha256": "0" * 64}))
    app = create_app(Settings(model_dir=fresh_model), contract)
    with in_thread(app) as client:
        assert client.get("/ready").status_code == 200
        assert app.state.serving.predictor.estimator is not None  # served from scikit-learn + verified fast path
    assert predictor.load_compiled(fresh_model, contract) is not None  # rewritten for the next start


def test_an_artifact_that_disagrees_is_never_written(fresh_model: Path, contract, monkeypatch) -> None:
    real_load = fastpath.load

    def tampered(directory: Path, suffix: str = ""):  # the written copy comes back slightly off
        fast, doc = real_load(directory, suffix)
        fast.forest.threshold = fast.forest.threshold + 0.5
        return fast, doc

    monkeypatch.setattr(fastpath, "load", tampered)
    assert not predictor.compile_fast_path(fresh_model, contract)
    assert not list(fresh_model.glob("fastpath.*"))


def test_unsupported_model_gets_no_artifact(fresh_model: Path, contract, config) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    loaded = predictor.load(fresh_model, contract)
    data = pd.read_csv(config.root / config.data.path)
    linear = Pipeline([("features", loaded.estimator.steps[0][1]), ("estimator", LogisticRegression(max_iter=500))])
    linear.fit(data[config.feature_columns], data[config.data.target])
    other = predictor.Predictor(linear, contract, loaded.info)
    assert not other.enable_fast_path([])
    assert not predictor.save_compiled(other, fresh_model, [])
    assert not list(fresh_model.glob("fastpath.*"))


READY_WITHOUT_SKLEARN = """
import asyncio, sys, time
import httpx
from pipeline.serving import contract, predictor
from pipeline.serving.app import create_app
from pipeline.serving.settings import Settings

HEAVY = {"sklearn", "scipy", "skops", "pandas"}
seen = {}
original = predictor.load_estimator

def spy(model_dir):  # the background thread starts right after /ready flips
    seen["imported at ready"] = sorted(HEAVY & {m.split(".")[0] for m in sys.modules})
    return original(model_dir)

predictor.load_estimator = spy
app = create_app(Settings(model_dir=sys.argv[1]), contract.load(sys.argv[2]))
row = {"species": "Gentoo", "island": "Biscoe", "clutch_completion": "yes", "culmen_length_mm": 50.5,
       "culmen_depth_mm": 16.0, "flipper_length_mm": 228.0, "body_mass_g": 5800.0, "delta_15n": 8.3, "delta_13c": -26.1}

async def check():
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://app") as client:
        assert (await client.get("/ready")).status_code == 200
        assert (await client.post("/predict", json={"rows": [row] * 100})).json()["predictions"] == ["male"] * 100
        deadline = time.monotonic() + 120
        while app.state.serving.predictor.estimator is None:
            assert time.monotonic() < deadline, "scikit-learn never loaded in the background"
            await asyncio.sleep(0.05)
        assert (await client.post("/predict", json={"rows": [row] * 100})).json()["predictions"] == ["male"] * 100

asyncio.run(check())
print(seen["imported at ready"])
"""


def test_ready_before_scikit_learn_is_imported(fresh_model: Path, contract, tmp_path: Path) -> None:
    from pipeline.serving.contract import write

    assert predictor.compile_fast_path(fresh_model, contract)
    contract_path = write(contract, tmp_path / "contract.json")
    result = subprocess.run([sys.executable, "-c", READY_WITHOUT_SKLEARN, str(fresh_model), str(contract_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "loaded from the compiled artifact" in result.stderr
