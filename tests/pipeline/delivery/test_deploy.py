"""The deploy smoke test against a real server: it judges known answers exactly as evaluate does
(one function, regression tolerance included). The model is trained by `mlops run` on a
generated regression project (make_regression, a categorical column, missing values)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import Config, load_config
from pipeline.delivery.deploy import smoke_test
from tests.pipeline.generated import regression_config, regression_frame, write_project
from tests.pipeline.serving.live import Process


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    project = tmp_path_factory.mktemp("generated-regression")
    write_project(project, regression_frame(), regression_config())
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "run"], cwd=project, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    server = Process(["-m", "pipeline.cli", "serve", "--model", "outputs/model", "--port", "{port}"], project / "serve.log",
                     cwd=project).wait_ready(90)
    try:
        yield project, server.url
    finally:
        server.stop(30)


def variant(project: Path, **case: Any) -> Config:
    """The project's config with its one known-answer case changed."""
    raw = yaml.safe_load((project / "mlops.yaml").read_text())
    raw["evaluate"]["behaviour"]["minimum"][0].update(case)
    path = project / "variant.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def served_prediction(config: Config, url: str) -> float:
    import httpx

    row = config.evaluate.behaviour.minimum[0].row
    return float(httpx.post(f"{url}/predict", json={"rows": [row]}).json()["predictions"][0])


def test_smoke_test_passes_a_regression_answer_within_its_tolerance(served: tuple[Path, str]) -> None:
    project, url = served
    config = load_config(project / "mlops.yaml")
    case = config.evaluate.behaviour.minimum[0]
    assert served_prediction(config, url) != case.expect  # near, not equal: only the tolerance makes it pass
    assert smoke_test(config, url, expect_version=None, wait=10) == []


def test_smoke_test_fails_a_wrong_regression_answer_and_says_by_how_much(served: tuple[Path, str]) -> None:
    project, url = served
    failures = smoke_test(variant(project, expect=1000), url, expect_version=None, wait=10)
    [line] = failures
    assert line.startswith("known answer 'an average north row': predicted ") and "expected 1000 ± 60" in line


@pytest.mark.parametrize("share", [0.9, 1.1])
def test_evaluate_and_the_smoke_test_give_the_same_verdict(served: tuple[Path, str], share: float) -> None:
    """Just inside and just outside the tolerance, both judges agree."""
    from pipeline import tracking
    from pipeline.behaviour import run_behaviour
    from pipeline.data import read_table

    project, url = served
    config = load_config(project / "mlops.yaml")
    expect = round(served_prediction(config, url) + share * 10.0, 6)
    config = variant(project, expect=expect, tolerance=10.0)
    features = read_table(project / "data" / "train.csv", config)[config.feature_columns]
    [evaluated] = run_behaviour(config, tracking.load_model(str(project / "outputs" / "model")), features)
    smoked = smoke_test(config, url, expect_version=None, wait=10)
    assert evaluated["passed"] is (share < 1) and (smoked == []) is (share < 1)
