"""Drift statistics (PSI, KS, chi-squared) and `mlops drift`: exit 1 and a JSON report on drift."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.cli import main
from pipeline.config import DriftConfig
from pipeline.drift import categorical_drift, chi2_test, feature_drift, ks_test, numeric_bins, proportions, psi


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert 0 < psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.9, 0.1])
    assert np.isfinite(psi([1.0, 0.0], [0.0, 1.0]))  # empty bins are floored, not infinite


def test_numeric_bins_are_reference_quantiles():
    reference = np.arange(1000.0)
    edges = numeric_bins(reference, 4)
    assert np.allclose(edges, [249.75, 499.5, 749.25])
    assert np.allclose(proportions(reference, edges), [0.25] * 4)


@pytest.mark.parametrize(("n1", "n2", "shift"), [(333, 216, 0.2), (50, 40, 0.5), (30_000, 20_000, 0.02)])
def test_ks_matches_scipy(n1, n2, shift):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
    expected = stats.ks_2samp(a, b)
    statistic, p_value = ks_test(a, b)
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue, rel=0.05)


def test_chi2_matches_scipy_without_continuity_correction():
    table = np.array([[30, 50, 20], [25, 40, 60]])
    expected = stats.chi2_contingency(table, correction=False)
    assert chi2_test(table) == pytest.approx((expected.statistic, expected.pvalue))
    assert chi2_test(np.array([[5, 0], [7, 0]])) == (0.0, 1.0)  # one category: nothing to test


def test_the_cli_path_does_not_import_scipy_stats():
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from pipeline.drift import feature_drift\nfrom pipeline.config import DriftConfig\n"
        "feature_drift(pd.Series(np.arange(50.0)), pd.Series(np.arange(60.0)), True, DriftConfig())\n"
        "feature_drift(pd.Series(list('ab') * 9), pd.Series(list('abc') * 5), False, DriftConfig())\n"
        "assert 'scipy.stats' not in sys.modules and 'sklearn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_feature_drift_needs_both_psi_and_the_test():
    rng = np.random.default_rng(1)
    settings = DriftConfig(psi_threshold=0.2, p_value=0.01)
    reference = pd.Series(rng.normal(size=5000))
    same = feature_drift(pd.Series(rng.normal(size=5000)), reference, True, settings)
    moved = feature_drift(pd.Series(rng.normal(1.0, size=5000)), reference, True, settings)
    assert not same["drifted"] and same["psi"] < 0.05
    assert moved["drifted"] and moved["test"] == "ks" and moved["p_value"] < 1e-6
    few = feature_drift(pd.Series([5.0, 6.0]), pd.Series([0.0, 1.0, 2.0]), True, settings)
    assert few["psi"] > 0.2 and not few["drifted"]  # large PSI on 2 rows is not significant


def test_categorical_drift_counts_new_categories():
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    result = categorical_drift(pd.Series(["a"] * 20 + ["c"] * 80), reference)
    assert result["new_categories"] == ["c"] and result["psi"] > 1 and result["p_value"] < 1e-6
    assert categorical_drift(pd.Series(["a"] * 10), pd.Series(["a"] * 10))["p_value"] == 1.0


def test_all_null_feature_is_skipped_not_crashed():
    result = feature_drift(pd.Series([None, None], dtype="float64"), pd.Series([1.0, 2.0]), True, DriftConfig())
    assert result["skipped"] == "no non-null values" and not result["drifted"]


def run_drift(config_path, data, capsys):
    code = main(["--config", str(config_path), "drift", "--data", str(data)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_mlops_drift_passes_on_the_bundled_data(make_config, tmp_path, capsys):
    config = make_config()
    code, text = run_drift(config, tmp_path / "data" / "penguins.csv", capsys)
    assert code == 0, text
    report = json.loads((tmp_path / "outputs" / "drift.json").read_text())
    assert report["drifted"] == [] and "body_mass_g" in report["features"]
    assert "drift: 0 of 9 features drifted" in text


def test_mlops_drift_exits_1_and_says_retrain(make_config, tmp_path, capsys):
    config = make_config()
    heavier = pd.read_csv(tmp_path / "data" / "penguins.csv")
    heavier["body_mass_g"] = (heavier["body_mass_g"] + 1500).clip(upper=6900)  # drifted, within the contract
    heavier.to_csv(tmp_path / "heavier.csv", index=False)
    code, text = run_drift(config, tmp_path / "heavier.csv", capsys)
    assert code == 1
    assert "drift: 1 of 9 features drifted" in text and "column 'body_mass_g'" in text
    assert json.loads((tmp_path / "outputs" / "drift.json").read_text())["drifted"] == ["body_mass_g"]


def test_mlops_drift_on_a_missing_file_is_a_clean_error(make_config, tmp_path, capsys):
    code, text = run_drift(make_config(), tmp_path / "nope.csv", capsys)
    assert code == 2 and "nope.csv: file not found" in text and "Traceback" not in text


def test_mlops_drift_refuses_data_that_breaks_the_contract_with_exit_2(make_config, tmp_path, capsys):
    """Exit 2, not 1: a broken feed must never look like drift (and open a retraining PR)."""
    config = make_config()
    broken = pd.read_csv(tmp_path / "data" / "penguins.csv")
    broken["body_mass_g"] += 10_000  # outside the contract's range: drifted AND invalid
    broken.to_csv(tmp_path / "broken.csv", index=False)
    code, text = run_drift(config, tmp_path / "broken.csv", capsys)
    assert code == 2, text
    assert "column 'body_mass_g': range" in text and "unusable, not drifted" in text
    assert not (tmp_path / "outputs" / "drift.json").exists()


@pytest.mark.parametrize("column", ["culmen_depth_mm", "delta_15n"])
def test_mlops_drift_refuses_data_missing_a_feature_with_exit_2(make_config, tmp_path, capsys, column):
    """A feed without a feature column is unusable data, never "no drift" (exit 0)."""
    config = make_config()
    incoming = pd.read_csv(tmp_path / "data" / "penguins.csv").drop(columns=[column])
    incoming.to_csv(tmp_path / "incoming.csv", index=False)
    code, text = run_drift(config, tmp_path / "incoming.csv", capsys)
    assert code == 2, text
    assert f"column '{column}': missing_column" in text


def test_mlops_drift_judges_unlabelled_incoming_data(make_config, tmp_path, capsys):
    """Live data has no ground truth yet: a missing target column is not a contract defect (exit
    2) but data drift is judged on the features (here: exit 1, body_mass_g drifted)."""
    config = make_config()
    unlabelled = pd.read_csv(tmp_path / "data" / "penguins.csv").drop(columns=["sex"])
    unlabelled["body_mass_g"] = (unlabelled["body_mass_g"] + 1500).clip(upper=6900)
    unlabelled.to_csv(tmp_path / "unlabelled.csv", index=False)
    code, text = run_drift(config, tmp_path / "unlabelled.csv", capsys)
    assert code == 1, text
    assert json.loads((tmp_path / "outputs" / "drift.json").read_text())["drifted"] == ["body_mass_g"]
