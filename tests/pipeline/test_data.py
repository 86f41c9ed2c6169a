"""read_table: contract dtypes, one clear error per broken file; split: seeded, stratified, shared."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.data import line_of, read_table, split
from pipeline.errors import PipelineError

HEADER = "id,kind,size,count,flag,label\n"


def tiny_config(**data: object) -> Config:
    columns = {
        "id": {"type": "string", "unique": True},
        "kind": {"type": "category", "allowed": ["a", "b"]},
        "size": {"type": "float", "nullable": True},
        "count": {"type": "int"},
        "flag": {"type": "bool"},
        "label": {"type": "category", "allowed": ["no", "yes"]},
    }
    return Config.model_validate({
        "project": "tiny", "task": "classification",
        "data": {"path": "x.csv", "target": "label", "id_column": "id", "test_size": 0.25, **data},
        "validate": {"columns": columns}, "train": {"estimator": "any"},
    })


def write(tmp_path: Path, content: str | bytes, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_reads_contract_dtypes(tmp_path):
    path = write(tmp_path, HEADER + "r1,a,1.5,3,true,yes\nr2,b,,4,false,no\n")
    df = read_table(path, tiny_config())
    assert str(df["size"].dtype) == "float64" and df["size"].isna().tolist() == [False, True]
    assert df["count"].dtype == pd.Int64Dtype() and df["flag"].dtype == pd.BooleanDtype()
    assert pd.api.types.is_string_dtype(df["kind"].dtype) and df["kind"].tolist() == ["a", "b"]
    assert isinstance(df.index, pd.RangeIndex) and line_of(0) == 2


def test_unparseable_value_is_kept_as_text_for_the_contract(tmp_path):
    path = write(tmp_path, HEADER + "r1,a,heavy,3,true,yes\nr2,b,2.0,4.5,false,no\n")
    df = read_table(path, tiny_config())
    assert df["size"].tolist() == ["heavy", "2.0"]
    assert df["count"].tolist() == ["3", "4.5"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file (0 bytes)"),
        (HEADER, "header only, no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content"),
        ("\n\n\n", "only blank lines"),
        (HEADER + "r1,a,1.5,3,true,yes\nr2,b,2", "line 3: expected 6 fields, found 3 (truncated row)"),
        (HEADER + "r1,a,1.5,3,true,yes,extra\n", "line 2: expected 6 fields, found 7 (extra fields)"),
        (HEADER.encode() + b"r1,\xff\xfe,1.5,3,true,yes\n", "column 'kind': not UTF-8 text (first at line 2)"),
        ("id,id,size\n1,2,3\n", "column 'id' appears twice"),
        ("id;kind;size\n1;a;2\n", "looks semicolon-separated, expected commas"),
        (HEADER + "r1,a,1.5,3,true,yes\n" * 200_000 + "r2,\x00,1,1,true,no\n", "binary content"),
    ],
)
def test_broken_files_raise_one_clear_message(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(PipelineError) as caught:
        read_table(path, tiny_config())
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match=r"nope.csv: file not found"):
        read_table(tmp_path / "nope.csv", tiny_config())


def labelled(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "label": ["yes" if i % 4 == 0 else "no" for i in range(n)]})


def test_split_is_seeded_stratified_and_disjoint():
    df = labelled()
    train, test = split(tiny_config(), df)
    again, _ = split(tiny_config(), df)
    assert train.index.equals(again.index)
    assert set(train.index).isdisjoint(test.index) and len(train) + len(test) == len(df)
    assert len(test) == 10 and 2 <= (test["label"] == "yes").sum() <= 3  # ~25% of each class


def test_split_refuses_a_class_it_cannot_stratify():
    df = labelled().assign(label=["yes"] + ["no"] * 39)
    with pytest.raises(PipelineError, match=r"'label'.*>= 2 classes with >= 2 rows"):
        split(tiny_config(), df)


def test_regression_split_is_seeded_and_sized():
    config = tiny_config().model_copy(update={"task": "regression"})
    df = labelled(41)
    train, test = split(config, df)
    assert len(test) == 11 and len(train) == 30  # ceil(0.25 * 41) test rows
    assert test.index.equals(split(config, df)[1].index)


def test_split_keeps_class_shares_at_scale():
    df = pd.DataFrame({"id": range(100_000), "label": ["yes"] * 10_000 + ["no"] * 90_000})
    _, test = split(tiny_config(), df)
    assert len(test) == 25_000 and (test["label"] == "yes").sum() == 2_500


def test_an_int_column_written_as_floats_reaches_training_as_numbers(tmp_path):
    """`59.0` in an int column: arrow reads text, the contract decides Int64 (it once stayed text,
    and training, the MLflow signature and the server all saw strings)."""
    path = write(tmp_path, HEADER + "r1,a,1.5,59.0,true,yes\nr2,b,2.0,4.0,false,no\nr3,a,,,true,no\n")
    df = read_table(path, tiny_config())
    assert df["count"].dtype == pd.Int64Dtype() and df["count"].tolist()[:2] == [59, 4] and df["count"].isna().iloc[2]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "Infinity"])
def test_non_finite_floats_stay_text_for_the_contract(tmp_path, value):
    """pandas cannot tell NaN from missing: a written-out non-finite value is kept as text so
    `validate` refuses it; an empty field is still a null."""
    path = write(tmp_path, HEADER + f"r1,a,{value},3,true,yes\nr2,b,,4,false,no\n")
    df = read_table(path, tiny_config())
    assert df["size"].iloc[0] == value.lower().replace("infinity", "inf") or df["size"].iloc[0] == value
    assert df["size"].isna().tolist() == [False, True]
