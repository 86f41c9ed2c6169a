"""Every bad input from issue 2 through the CLI: `mlops validate --data FILE` exits 1 with a line
naming the file or the column, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

Edit = Callable[[pd.DataFrame], pd.DataFrame]


def validate_cli(config: Path, data: Path | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    argv = ["--config", str(config), "validate"] + (["--data", str(data)] if data else [])
    code = main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def penguins(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "data" / "penguins.csv", keep_default_na=False, dtype=str)


def write_csv(folder: Path, edit: Edit) -> Path:
    path = folder / "bad.csv"
    edit(penguins(folder)).to_csv(path, index=False)
    return path


def with_value(column: str, row: int, value: str) -> Edit:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[row, column] = value
        return df

    return edit


def test_bundled_data_passes(make_config, capsys):
    code, text = validate_cli(make_config(), None, capsys)
    assert code == 0, text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file (0 bytes)"),
        (b"sample_id,species,island\n", "header only, no data rows"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03binary", "binary content"),
        (b"PK\x03\x04" + bytes(range(256)), "binary content"),
    ],
)
def test_broken_files_name_the_file(make_config, tmp_path, capsys, content, expected):
    config = make_config()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    code, text = validate_cli(config, bad, capsys)
    assert code == 1
    assert f"{bad}: {expected}" in text


def test_truncated_last_row_names_the_line(make_config, tmp_path, capsys):
    config = make_config()
    text = (tmp_path / "data" / "penguins.csv").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text(text[: len(text) - 40])  # cut the last record mid-way, as an interrupted copy would
    code, out = validate_cli(config, bad, capsys)
    assert code == 1
    assert f"{bad}: line 334: expected 12 fields" in out and "truncated row" in out


def not_sexed(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(sex="male")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda df: df.drop(columns=["island"]), "column 'island': missing_column"),
        (lambda df: df.assign(notes="x"), "column 'notes': extra_column"),
        (with_value("body_mass_g", 16, "heavy"),
         "column 'body_mass_g': type: expected float values, observed 1 row not float (first: line 18 = 'heavy')"),
        (lambda df: df.assign(delta_15n=[""] * 60 + list(df["delta_15n"][60:])),
         "column 'delta_15n': max_null_rate: expected at most 10.0% nulls"),
        (with_value("species", 3, "Emperor"),
         "column 'species': allowed: expected one of [Adelie, Chinstrap, Gentoo], "
         "observed 1 row with unseen values (first: line 5 = 'Emperor')"),
        (with_value("body_mass_g", 16, "9999"),
         "column 'body_mass_g': range: expected values in [2000, 7000], observed 1 row outside (first: line 18 = 9999.0)"),
        (lambda df: pd.concat([df, df.iloc[:20].assign(sample_id=[f"copy-{i}" for i in range(20)])]),
         "duplicates: expected at most 0.0% duplicate rows (ignoring 'sample_id')"),
        (not_sexed, "column 'sex': classes: expected at least 2 classes in the target, observed 1 class (male)"),
        (lambda df: df.drop(columns=["sex"]), "column 'sex': target: expected target column 'sex' (data.target) present"),
        (with_value("sample_id", 5, "PAL0708-adelie-1"), "column 'sample_id': unique"),
        (with_value("year", 2, "99999999999999999999999"), "column 'year': type: expected int values, observed 1 row not int"),
    ],
)
def test_contract_violations_name_the_column(make_config, tmp_path, capsys, edit, expected):
    config = make_config()
    code, text = validate_cli(config, write_csv(tmp_path, edit), capsys)
    assert code == 1
    assert expected in text
    report = json.loads((tmp_path / "outputs" / "validate-data.json").read_text())
    assert report["passed"] is False and report["problems"]


def test_extra_column_only_warns_when_configured(make_config, tmp_path, capsys):
    config = make_config(lambda raw: raw["validate"].update(extra_columns="warn"))
    code, text = validate_cli(config, write_csv(tmp_path, lambda df: df.assign(notes="x")), capsys)
    assert code == 0
    assert "notes" in text and "warning" in text


def test_config_typo_names_the_key(make_config, capsys):
    config = make_config(lambda raw: raw["validate"].update(min_row=raw["validate"].pop("min_rows")))
    code, text = validate_cli(config, None, capsys)
    assert code == 1 and "validate.min_row: unknown key" in text


def test_config_pointing_at_a_missing_file_names_key_and_file(make_config, capsys):
    config = make_config(lambda raw: raw["data"].update(reference="data/old.csv"))
    code, text = validate_cli(config, None, capsys)
    assert code == 1 and "data.reference: file not found: data/old.csv" in text


def test_data_file_given_on_the_command_line_missing(make_config, tmp_path, capsys):
    code, text = validate_cli(make_config(), tmp_path / "nope.csv", capsys)
    assert code == 1 and f"{tmp_path / 'nope.csv'}: file not found" in text


def test_as_a_real_process_no_traceback(make_config, tmp_path):
    """The installed entry point, not just main(): exit status and stderr as CI sees them."""
    config = make_config()
    bad = write_csv(tmp_path, with_value("island", 7, "Atlantis"))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--config", str(config), "validate", "--data", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "column 'island': allowed" in done.stderr and "'Atlantis'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_one_line_per_problem(make_config, tmp_path, capsys):
    """Two problems in one file give exactly two problem lines, both found in one run."""
    config = make_config()
    bad = write_csv(tmp_path, lambda df: with_value("body_mass_g", 1, "1")(with_value("species", 2, "Emperor")(df)))
    code, text = validate_cli(config, bad, capsys)
    lines = [line for line in text.splitlines() if line.startswith("validate: column")]
    assert code == 1 and len(lines) == 2


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("column", ["body_mass_g", "delta_15n", "culmen_depth_mm"])
def test_non_finite_values_break_every_float_column(make_config, tmp_path, capsys, column, value):
    """Bounded, nullable and (here) unbounded float columns alike: named by column and line."""
    config = make_config(lambda raw: raw["validate"]["columns"]["culmen_depth_mm"].update(min=None, max=None))
    code, text = validate_cli(config, write_csv(tmp_path, with_value(column, 16, value)), capsys)
    assert code == 1
    assert (f"column '{column}': type: expected finite float values, observed 1 row not finite float "
            f"(first: line 18 = '{value}')") in text


def test_a_huge_value_is_echoed_cut_short(make_config, tmp_path, capsys):
    """A 10^6-character value once produced 2 MB of stderr and a 2 MB report."""
    config = make_config()
    huge = "x" * 1_000_000
    bad = write_csv(tmp_path, lambda df: with_value("body_mass_g", 3, huge)(with_value("species", 4, huge)(df)))
    code, text = validate_cli(config, bad, capsys)
    assert code == 1
    assert "column 'species': allowed" in text and "column 'body_mass_g': type" in text
    assert "(1,000,002 characters)" in text  # the quoted value, cut and measured
    assert len(text) < 4_000
    assert (tmp_path / "outputs" / "validate-data.json").stat().st_size < 10_000
