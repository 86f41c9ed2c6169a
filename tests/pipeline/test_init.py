"""`mlops init --data FILE --target COLUMN` then `mlops run`: two commands from a CSV the template
has never seen to a passing report, on a generated classification set (31 columns) and a generated
regression set, and the served model answers what the saved model predicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.pipeline.generated import classification_csv, regression_csv


def mlops(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=folder, capture_output=True, text=True,
                          timeout=600)


def served_equals_saved(folder: Path, rows: list[dict]) -> None:
    """What a user does next: `mlops serve` (the registry's `challenger`, no options). It passes
    the deploy smoke test and answers exactly what the saved (skops) model predicts."""
    import httpx
    import pandas as pd

    from pipeline.config import load_config
    from pipeline.delivery.contract import from_config
    from pipeline.delivery.deploy import smoke_test
    from pipeline.serving import predictor
    from tests.pipeline.serving.live import Process

    config = load_config(folder / "mlops.yaml")
    contract = from_config(config)
    saved = predictor.load(folder / "outputs" / "model", contract).estimator.predict(pd.DataFrame(rows)[contract.feature_names])
    server = Process(["-m", "pipeline.cli", "serve", "--port", "{port}"], folder / "serve.log", cwd=folder).wait_ready(120)
    try:
        assert smoke_test(config, server.url, expect_version=None, wait=10) == []
        answer = httpx.post(f"{server.url}/predict", json={"rows": rows}, timeout=30)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pytest.approx(list(saved))


def feature_rows(folder: Path, data: Path, count: int = 5) -> list[dict]:
    """Rows of the file as JSON would carry them: numbers as numbers, missing values left out."""
    import pandas as pd

    from pipeline.config import load_config

    config = load_config(folder / "mlops.yaml")
    frame = pd.read_csv(data).head(count)[config.feature_columns]
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if v == v} for row in frame.to_dict("records")]


def test_init_then_run_passes_on_a_generated_classification_set(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    data = classification_csv(tmp_path / "data" / "churn.csv")
    init = mlops(tmp_path, "init", "--data", "data/churn.csv", "--target", "churn")
    assert init.returncode == 0, init.stderr
    text = (tmp_path / "mlops.yaml").read_text()
    raw = yaml.safe_load(text)
    columns = raw["validate"]["columns"]
    assert len(columns) == 31
    assert columns["age"]["type"] == "int"  # written as 59.0 in the file
    assert columns["income"]["nullable"] is True and 0.1 <= columns["income"]["max_null_rate"] <= 0.2
    assert columns["region"] == {"type": "category", "allowed": ["east", "north", "south", "west"]}
    assert columns["churn"]["allowed"] == ["no", "yes"]
    assert raw["data"]["id_column"] == "customer_id" and raw["data"]["reference"] == "data/churn.reference.csv"
    assert {s["column"] for s in raw["evaluate"]["slices"]} == {"region", "plan"}
    assert "# Baseline measured by `mlops init`" in text and "dummy 0.5" in text  # the gates say how they were set
    assert "# minimum:" in text  # behaviour tests as commented examples
    assert (tmp_path / "data" / "churn.reference.csv").is_file()

    run = mlops(tmp_path, "run")
    assert run.returncode == 0, run.stderr
    assert "Every data check and model test passed" in (tmp_path / "outputs" / "report.md").read_text()
    inputs = yaml.safe_load((tmp_path / "outputs" / "model" / "MLmodel").read_text())["signature"]["inputs"]
    age = next(field for field in yaml.safe_load(inputs) if field["name"] == "age")
    assert age["type"] == "long"  # the contract's int reached training and the signature, not text
    served_equals_saved(tmp_path, feature_rows(tmp_path, data))


def test_init_then_run_passes_on_a_generated_regression_set(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    data = regression_csv(tmp_path / "data" / "houses.csv")
    init = mlops(tmp_path, "init", "--data", "data/houses.csv", "--target", "price")
    assert init.returncode == 0, init.stderr
    raw = yaml.safe_load((tmp_path / "mlops.yaml").read_text())
    assert raw["task"] == "regression" and "positive_class" not in raw["data"]
    assert raw["validate"]["columns"]["rooms"]["type"] == "int"
    assert {g["metric"]: g["direction"] for g in raw["evaluate"]["gates"]} == {"r2": "higher", "rmse": "lower", "mae": "lower"}
    run = mlops(tmp_path, "run")
    assert run.returncode == 0, run.stderr
    assert "Every data check and model test passed" in (tmp_path / "outputs" / "report.md").read_text()
    served_equals_saved(tmp_path, feature_rows(tmp_path, data))


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    regression_csv(tmp_path / "data" / "houses.csv", rows=120)
    (tmp_path / "mlops.yaml").write_text("# mine\n")
    refused = mlops(tmp_path, "init", "--data", "data/houses.csv", "--target", "price")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: mlops.yaml: already exists; pass --force to overwrite it"
    assert (tmp_path / "mlops.yaml").read_text() == "# mine\n"
    forced = mlops(tmp_path, "init", "--data", "data/houses.csv", "--target", "price", "--force")
    assert forced.returncode == 0, forced.stderr
    assert yaml.safe_load((tmp_path / "mlops.yaml").read_text())["data"]["target"] == "price"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file (0 bytes)"),
        (b"a;b;price\n1;2;3\n", "the file looks semicolon-separated, expected commas"),
        (b"a,b,price\n1,2,3\n4,5\n", "line 3: expected 3 fields, found 2 (truncated row)"),
        (b"a,b,price\n", "header only, no data rows"),
    ],
)
def test_unreadable_files_get_the_errors_validate_gives(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "bad.csv").write_bytes(content)
    result = mlops(tmp_path, "init", "--data", "bad.csv", "--target", "price")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: bad.csv: ") and expected in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "mlops.yaml").exists()


def test_an_unknown_target_names_the_columns(tmp_path: Path) -> None:
    regression_csv(tmp_path / "houses.csv", rows=50)
    result = mlops(tmp_path, "init", "--data", "houses.csv", "--target", "Price")
    assert result.returncode == 1
    assert "--target 'Price' is not a column; the columns are: house_id, x0," in result.stderr
