"""`mlops monitor` on live files: the N-of-M rule, the minimum sample size, unlabelled rows,
bad input (exit 2), no data source, and the written outputs (JSON, Markdown, Prometheus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main


def monitor(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--config", str(config), "monitor", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def result(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "outputs" / "monitor.json").read_text())


def test_shifted_live_data_warrants_retraining_with_exit_1(make_config, write_live, tmp_path, capsys):
    code, text = monitor(make_config(), "--data", str(write_live("live.csv", shift=True)), capsys=capsys)
    assert code == 1, text
    out = result(tmp_path)
    assert out["verdict"] == "retrain" and out["retrain_warranted"] is True
    assert {"body_mass_g", "flipper_length_mm"} <= set(out["drift"]["drifted"])
    assert out["metrics"]["accuracy"] < 0.8 and "accuracy" in [g["metric"] for g in out["gates"] if not g["passed"]]
    markdown = (tmp_path / "outputs" / "monitor.md").read_text()
    assert markdown.splitlines()[1].startswith("## ❌ penguins-sex: Retraining warranted")
    prom = (tmp_path / "outputs" / "monitor.prom").read_text()
    for line in ('mlops_monitor_retrain_warranted{project="penguins-sex"} 1.0',
                 'mlops_monitor_drifted{feature="body_mass_g",project="penguins-sex"} 1.0',
                 'mlops_monitor_live_metric{metric="accuracy",project="penguins-sex"}',
                 'mlops_monitor_drift_psi{feature="body_mass_g",project="penguins-sex"}',
                 'mlops_monitor_labelled_rows{project="penguins-sex"} 333.0',
                 'mlops_monitor_live_gate{direction="higher",metric="accuracy",project="penguins-sex"} 0.8'):
        assert line in prom


def test_healthy_live_data_exits_0(make_config, write_live, tmp_path, capsys):
    code, text = monitor(make_config(), "--data", str(write_live("live.csv", shift=False)), capsys=capsys)
    assert code == 0, text
    assert result(tmp_path)["verdict"] == "healthy" and result(tmp_path)["breaches"] == 0
    assert 'mlops_monitor_retrain_warranted{project="penguins-sex"} 0.0' in (tmp_path / "outputs" / "monitor.prom").read_text()


def test_live_metrics_use_evaluates_definitions(make_config, write_live, tmp_path, capsys):
    """The same numbers `pipeline.metrics` gives for the same truth, prediction and score."""
    import numpy as np
    import pandas as pd
    from sklearn import metrics as skm

    path = write_live("live.csv", shift=True)
    monitor(make_config(), "--data", str(path), capsys=capsys)
    frame = pd.read_csv(path)
    live = result(tmp_path)["metrics"]
    assert live["accuracy"] == pytest.approx(float(np.mean(frame["sex"] == frame["prediction"])))
    assert live["roc_auc"] == pytest.approx(skm.roc_auc_score(frame["sex"] == "male", frame["score"]))
    assert live["f1"] == pytest.approx(skm.f1_score(frame["sex"], frame["prediction"], pos_label="male"))


def test_n_of_m_one_bad_day_of_three_is_not_a_trend(make_config, write_live, tmp_path, capsys):
    """Timestamps put the rows in 3 daily buckets; the rule wants 2 breaches: one bad day is
    reported per bucket but does not warrant retraining, two do."""
    import pandas as pd

    day = 86_400.0

    def days(shifted_days: int):
        def edit(frame: pd.DataFrame) -> pd.DataFrame:
            from tests.pipeline.monitor.conftest import live_rows

            shifted = live_rows(True, seed=1)
            parts = []
            for d in range(3):
                rows = (shifted if d < shifted_days else frame).iloc[d * 111:(d + 1) * 111].copy()
                rows["timestamp"] = 1_700_000_000 + d * day + day / 2 + (rows.index % 100) * 60
                parts.append(rows)
            return pd.concat(parts)
        return edit

    config = make_config(lambda raw: raw["monitor"].update(window="3d"))
    code, _ = monitor(config, "--data", str(write_live("one.csv", False, edit=days(1))), capsys=capsys)
    assert code == 0
    assert [b["status"] for b in result(tmp_path)["buckets"]] == ["breach", "ok", "ok"]
    code, _ = monitor(config, "--data", str(write_live("two.csv", False, edit=days(2))), capsys=capsys)
    assert code == 1
    assert [b["status"] for b in result(tmp_path)["buckets"]] == ["breach", "breach", "ok"]


def test_rows_older_than_the_window_are_left_out(make_config, write_live, tmp_path, capsys):
    def edit(frame):
        frame["timestamp"] = [1_700_000_000 - (0 if i < 200 else 30 * 86_400) for i in range(len(frame))]
        return frame

    monitor(make_config(), "--data", str(write_live("live.csv", False, edit=edit)), "--window", "7d", capsys=capsys)
    assert result(tmp_path)["rows"] == 200


def test_below_the_minimum_sample_size_is_not_enough_data_not_a_finding(make_config, write_live, tmp_path, capsys):
    code, text = monitor(make_config(), "--data", str(write_live("live.csv", True, edit=lambda f: f.head(60))),
                         capsys=capsys)
    assert code == 0, text
    out = result(tmp_path)
    assert out["verdict"] == "not enough data" and "Not enough data" in out["headline"]
    assert 'mlops_monitor_enough_data{project="penguins-sex"} 0.0' in (tmp_path / "outputs" / "monitor.prom").read_text()


def test_unlabelled_rows_without_a_target_column_are_judged_for_drift(make_config, write_live, tmp_path, capsys):
    path = write_live("live.csv", True, edit=lambda f: f.drop(columns=["sex", "prediction", "score"]))
    code, text = monitor(make_config(), "--data", str(path), capsys=capsys)
    assert code == 1, text
    out = result(tmp_path)
    assert out["labelled"] == 0 and out["metrics"] == {} and "body_mass_g" in out["drift"]["drifted"]
    assert "live metrics not judged" in out["buckets"][0]["notes"][-1]


def test_partly_labelled_rows_are_fine(make_config, write_live, tmp_path, capsys):
    def edit(frame):
        frame.loc[frame.index % 2 == 0, "sex"] = None
        return frame

    code, text = monitor(make_config(), "--data", str(write_live("live.csv", False, edit=edit)), capsys=capsys)
    assert code == 0, text
    assert result(tmp_path)["labelled"] == 166


def test_a_live_file_that_breaks_the_contract_is_exit_2_not_drift(make_config, write_live, tmp_path, capsys):
    def edit(frame):
        frame.loc[5, "body_mass_g"] = 99_999
        return frame

    code, text = monitor(make_config(), "--data", str(write_live("live.csv", True, edit=edit)), capsys=capsys)
    assert code == 2, text
    assert "line 7: column 'body_mass_g': range" in text and "the live data is unusable" in text
    assert "Traceback" not in text and not (tmp_path / "outputs" / "monitor.json").exists()


def test_no_data_source_is_exit_2_or_a_notice_with_optional(make_config, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MONITOR_DATA_URL", raising=False)
    monkeypatch.delenv("MLOPS_PREDICTION_LOG", raising=False)
    config = make_config()
    code, text = monitor(config, capsys=capsys)
    assert code == 2 and "no data source" in text and "MONITOR_DATA_URL" in text
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh-output"))
    code, text = monitor(config, "--optional", capsys=capsys)
    assert code == 0, text
    assert "::notice" in text and "no data source" in text
    assert "verdict=no data source" in (tmp_path / "gh-output").read_text()


def test_a_bad_window_and_a_bad_monitor_key_are_clear_errors(make_config, write_live, capsys):
    code, text = monitor(make_config(), "--data", str(write_live("live.csv", False)), "--window", "week", capsys=capsys)
    assert code == 2 and "'week' is not a duration such as 30m, 12h, 7d or 2w" in text
    config = make_config(lambda raw: raw["monitor"].update(breach=2))
    code, text = monitor(config, "--data", "x.csv", capsys=capsys)
    assert code == 2 and "monitor.breach: unknown key" in text
    config = make_config(lambda raw: raw["monitor"].update(breaches=9))
    code, text = monitor(config, "--data", "x.csv", capsys=capsys)
    assert "breaches (9) must be at most buckets (3)" in text


def test_the_log_mlops_serve_writes_here_is_the_default_source(make_config, tmp_path, capsys, monkeypatch):
    """`mlops serve` logs to .mlops/predictions.db; `mlops monitor` with no flag reads that file."""
    import time

    from pipeline.serving.predlog import PredictionLog, Record

    monkeypatch.delenv("MONITOR_DATA_URL", raising=False)
    monkeypatch.delenv("MLOPS_PREDICTION_LOG", raising=False)
    config = make_config()
    (tmp_path / ".mlops").mkdir(exist_ok=True)
    log = PredictionLog(str(tmp_path / ".mlops" / "predictions.db"), id_column="sample_id")
    log.start()
    row = {"species": "Gentoo", "island": "Biscoe", "clutch_completion": "yes", "culmen_length_mm": 50.5,
           "culmen_depth_mm": 16.0, "flipper_length_mm": 228.0, "body_mass_g": 5800.0, "delta_15n": 8.3,
           "delta_13c": -26.1}
    log.record(Record("r1", time.time(), [row], ["male"], [0.9], [[0.1, 0.9]]))
    log.close()
    code, text = monitor(config, capsys=capsys)
    assert code == 0, text
    out = result(tmp_path)
    assert out["rows"] == 1 and "predictions.db" in out["source"]
    monkeypatch.setenv("MLOPS_PREDICTION_LOG", "off")  # logging switched off: no source, as before
    code, text = monitor(config, capsys=capsys)
    assert code == 2 and "no data source" in text
