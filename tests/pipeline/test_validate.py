"""validate: every contract, leakage and drift problem is collected, once, in the report's shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ColumnSpec, Config
from pipeline.steps.validate import ValidateResult
from pipeline.validate import allowed_null_rate, validate


def make_config(task: str = "classification", **validate_options: Any) -> Config:
    columns = {
        "id": {"type": "string", "unique": True},
        "kind": {"type": "category", "allowed": ["a", "b"]},
        "size": {"type": "float", "min": 0, "max": 100, "nullable": True, "max_null_rate": 0.1},
        "count": {"type": "int", "min": 0},
        "flag": {"type": "bool"},
        "label": {"type": "category", "allowed": ["no", "yes"]} if task == "classification" else {"type": "float"},
    }
    columns.update(validate_options.pop("columns", {}))
    return Config.model_validate({
        "project": "tiny", "task": task, "seed": 1,
        "data": {"path": "x.csv", "target": "label", "id_column": "id", "test_size": 0.25},
        "validate": {"min_rows": 10, "columns": columns, **validate_options},
        "train": {"estimator": "any"},
    })


def frame(n: int = 40) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame({
        "id": pd.array([f"r{k}" for k in i], dtype="str"),
        "kind": pd.array(np.where(i % 2 == 0, "a", "b"), dtype="str"),
        "size": i * (99 / n) + 0.5,
        "count": pd.array((i * 7) % 23, dtype="Int64"),
        "flag": pd.array(i % 5 == 0, dtype="boolean"),
        "label": pd.array(np.where(i % 3 == 0, "yes", "no"), dtype="str"),
    })


def found(report: dict[str, Any], key: str = "problems") -> set[tuple[str, str | None]]:
    return {(p["check"], p["column"]) for p in report[key]}


def test_clean_data_passes_with_a_json_report():
    report = validate(make_config(), frame(), frame(), source="tiny.csv")
    assert report["passed"] and report["problems"] == [] and report["warnings"] == []
    assert report["rows"] == 40 and report["source"] == "tiny.csv"
    assert {"type", "range", "allowed", "unique", "duplicates", "leakage", "drift"} <= set(report["checks_run"])
    assert report["leakage"]["split"] == {"train_rows": 30, "test_rows": 10, "seed": 1}
    assert report["drift"]["drifted"] == []
    json.dumps(report, allow_nan=False)


def _set(column: str, row: int, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda df: df.drop(columns=["kind"]), ("missing_column", "kind")),
        (lambda df: df.assign(notes="x"), ("extra_column", "notes")),
        (_set("size", 3, "heavy"), ("type", "size")),
        (_set("count", 3, 2.5), ("type", "count")),
        (_set("flag", 3, "maybe"), ("type", "flag")),
        (lambda df: df.assign(size=np.where(np.arange(40) < 8, np.nan, df["size"])), ("max_null_rate", "size")),
        (_set("count", 5, None), ("nullable", "count")),
        (_set("kind", 2, "c"), ("allowed", "kind")),
        (_set("size", 17, 999.0), ("range", "size")),
        (_set("id", 1, "r0"), ("unique", "id")),
        (lambda df: pd.concat([df, df.iloc[:3].assign(id=["d1", "d2", "d3"])], ignore_index=True), ("duplicates", None)),
        (lambda df: df.iloc[:5], ("min_rows", None)),
        (lambda df: df.assign(label="no"), ("classes", "label")),
        (lambda df: df.drop(columns=["label"]), ("target", "label")),
    ],
)
def test_each_bad_input_is_one_problem(change, expected):
    report = validate(make_config(), change(frame()), None, source="bad.csv")
    assert not report["passed"]
    assert expected in found(report)
    # one problem per fact: a bad value is not reported again as a null or a range failure
    if expected[1] is not None:
        assert len([p for p in report["problems"] if p["column"] == expected[1]]) == 1


def lines(report, kind="problems"):
    return [item.text() for item in getattr(ValidateResult.model_validate({**report, "data_hash": "x"}), kind)]


def test_problem_line_names_check_column_expected_and_file_line():
    report = validate(make_config(), _set("size", 16, 999.5)(frame()), None, source="bad.csv")
    assert lines(report) == [
        "column 'size': range: expected values in [0, 100], observed 1 row outside (first: line 18 = 999.5)"
    ]
    assert [p["line"] for p in report["problems"]] == [18]  # the row GitHub annotates


def test_all_problems_are_collected_at_once():
    bad = _set("kind", 2, "c")(_set("size", 16, 999.0)(frame())).drop(columns=["flag"])
    assert found(validate(make_config(), bad, None, source="x")) == {
        ("allowed", "kind"), ("range", "size"), ("missing_column", "flag")
    }


def test_extra_columns_can_warn_instead():
    report = validate(make_config(extra_columns="warn"), frame().assign(notes="x"), None, source="x")
    assert report["passed"] and found(report, "warnings") == {("extra_column", "notes")}
    assert lines(report, "warnings") == [
        "column 'notes': extra_column: expected only columns declared in validate.columns, "
        "observed undeclared column (validate.extra_columns: warn)"
    ]


def test_a_copy_or_relabelling_of_the_target_is_leakage():
    df = frame().assign(kind=lambda d: d["label"].map({"yes": "a", "no": "b"}).astype("str"))
    report = validate(make_config(), df, None, source="x")
    assert ("leakage.target_copy", "kind") in found(report)
    assert report["leakage"]["target_copies"] == ["kind"]


def test_regression_target_copy_is_found_by_correlation():
    df = frame().assign(label=lambda d: d["size"] * 2 + 1)  # a unit conversion of the target
    report = validate(make_config("regression"), df, None, source="x")
    assert found(report) == {("leakage.target_copy", "size")}


def test_rows_shared_between_train_and_test_are_leakage():
    df = frame()
    df = pd.concat([df, df.assign(id=[f"copy{k}" for k in range(40)])], ignore_index=True)
    report = validate(make_config(max_duplicate_rate=0.5), df, None, source="x")
    shared = report["leakage"]["train_test_overlap"]
    assert shared > 0
    # tolerated up to max_duplicate_rate (a warning), a problem above it
    expected_in = "problems" if shared / report["leakage"]["split"]["test_rows"] > 0.5 else "warnings"
    assert ("leakage.train_test_overlap", None) in found(report, expected_in)


def test_ids_in_both_train_and_test_are_leakage():
    config = make_config(columns={"id": {"type": "string"}})
    df = frame().assign(id=[f"r{k // 2}" for k in range(40)])
    report = validate(config, df, None, source="x")
    assert ("leakage.id_overlap", "id") in found(report)


def test_drift_warns_or_fails_per_config():
    reference = frame(400)
    shifted = frame(400).assign(size=lambda d: d["size"] / 8 + 60)  # a different distribution, same range
    warned = validate(make_config(drift={"on_drift": "warn"}), shifted, reference, source="x")
    assert warned["passed"] and ("drift", "size") in found(warned, "warnings")
    assert warned["drift"]["features"]["size"]["psi"] > 0.2
    failed = validate(make_config(drift={"on_drift": "fail"}), shifted, reference, source="x")
    assert not failed["passed"] and ("drift", "size") in found(failed)


def test_drift_is_skipped_without_reference():
    assert validate(make_config(), frame(), None, source="x")["drift"] == {"skipped": "no reference data"}


def test_non_default_index_still_reports_file_lines():
    df = _set("size", 4, 999.0)(frame()).set_index("id", drop=False)
    assert "line 6 = 999.0" in lines(validate(make_config(), df, None, source="x"))[0]


@pytest.mark.parametrize(
    ("spec", "rate"),
    [({}, 0.0), ({"nullable": True}, 1.0), ({"nullable": True, "max_null_rate": 0.1}, 0.1), ({"max_null_rate": 0.2}, 0.2)],
)
def test_allowed_null_rate(spec, rate):
    assert allowed_null_rate(ColumnSpec(type="float", **spec)) == rate


def test_the_wrong_file_is_one_problem_not_one_per_column():
    report = validate(make_config(), pd.DataFrame({"<html>": ["<body>"]}), None, source="x")
    assert found(report) == {("columns", None)}
    assert "none of them (header: '<html>')" in report["problems"][0]["observed"]


def test_counts_are_exact_beyond_the_failure_cases_pandera_keeps():
    df = frame(400)
    df["size"] = np.where(np.arange(400) % 2 == 0, 500.0, df["size"])  # 200 out of range
    df["kind"] = np.where(np.arange(400) < 300, "a", np.where(np.arange(400) % 2 == 0, "zz", "yy"))
    report = validate(make_config(), df, None, source="x")
    observed = {p["check"]: p["observed"] for p in report["problems"]}
    assert observed["range"].startswith("200 rows outside (first: line 2 = 500.0)")
    assert observed["allowed"] == "100 rows with unseen values (first: line 302 = 'zz'); unseen: yy, zz"
