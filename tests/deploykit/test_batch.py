"""deploykit.batch: inputs, units, the schema check of every row, part files, the report, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import train_model

import deploykit
from deploykit.artifact import load_artifact
from deploykit.batch import EngineRegistry, csv_column, find_inputs, plan_units
from deploykit.errors import BatchError, SchemaError
from deploykit.schema import Column


def rows(n: int, seed: int = 11) -> pd.DataFrame:
    """Bank-marketing input rows with an ``id`` column first."""
    frame, _ = train_model.make_data(rows=n, seed=seed)
    frame.insert(0, "id", np.arange(n))
    return frame


def read_parts(folder: Path) -> pd.DataFrame:
    """Every part file in ``folder`` (Parquet or CSV) as one frame, sorted by id."""
    parts = sorted(folder.glob("part-*"))
    assert parts, f"no part files in {folder}"
    frames = [pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for p in parts]
    return pd.concat(frames, ignore_index=True).sort_values("id").reset_index(drop=True)


def expected(model_path: Path, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    model = load_artifact(model_path).model
    X = frame[train_model.COLUMNS]
    return model.predict(X), model.predict_proba(X)


def assert_scored(folder: Path, model_path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    got = read_parts(folder)
    labels, proba = expected(model_path, frame)
    assert got["id"].tolist() == frame["id"].tolist()
    assert got["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(got["probability_no"], proba[:, 0], rtol=1e-12)
    np.testing.assert_allclose(got["probability_yes"], proba[:, 1], rtol=1e-12)
    return got


# -- output equals in-process predict / predict_proba -----------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_every_input_format_scores_like_predict(fmt: str, bank_model: Path, tmp_path: Path) -> None:
    frame = rows(3000)
    src = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        frame.to_csv(src, index=False)
    elif fmt == "parquet":
        frame.to_parquet(src, row_group_size=700)
    else:
        frame.to_json(src, orient="records", lines=True)
    report = deploykit.batch(bank_model, src, tmp_path / "out", chunk_size="20KB")
    got = assert_scored(tmp_path / "out", bank_model, frame)
    assert list(got.columns) == ["id", *train_model.COLUMNS, "prediction", "probability_no", "probability_yes"]
    assert report.rows_in == report.rows_out == 3000 and report.rows_rejected == 0
    assert len(report.parts) > 1
    assert got["age"].dtype == np.int64 and got["job"].dtype == object


def test_report_file_records_the_run(bank_model: Path, tmp_path: Path) -> None:
    frame = rows(500)
    frame.to_csv(tmp_path / "in.csv", index=False)
    report = deploykit.batch(str(bank_model), tmp_path / "in.csv", tmp_path / "out", keep=["id"])
    on_disk = json.loads((tmp_path / "out" / "_report.json").read_text())
    assert on_disk["status"] == "succeeded" and report.status == "succeeded"
    assert on_disk["rows_in"] == on_disk["rows_out"] == 500
    assert on_disk["model_sha256"] == load_artifact(bank_model).sha256
    assert on_disk["engine"] == "local" and on_disk["seconds"] > 0
    assert {"python", "numpy", "pyarrow", "scikit-learn", "pandas"} <= set(on_disk["versions"])
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == on_disk["parts"]
    assert list(read_parts(tmp_path / "out").columns) == ["id", "prediction", "probability_no", "probability_yes"]


def test_folder_and_glob_inputs(bank_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    a, b = rows(300, seed=1), rows(200, seed=2)
    b["id"] += 300
    a.to_csv(folder / "day-1.csv", index=False)
    b.to_csv(folder / "day-2.csv", index=False)
    (folder / "_SUCCESS").write_text("")  # what Spark and Hadoop leave: ignored
    deploykit.batch(bank_model, folder, tmp_path / "out-folder")
    deploykit.batch(bank_model, f"{folder}/day-*.csv", tmp_path / "out-glob", output_format="csv")
    both = pd.concat([a, b], ignore_index=True)
    assert_scored(tmp_path / "out-folder", bank_model, both)
    assert_scored(tmp_path / "out-glob", bank_model, both)
    assert {p.suffix for p in (tmp_path / "out-glob").glob("part-*")} == {".csv"}


def test_recorded_deployment_scores_its_kept_model(bank_model: Path, tmp_path: Path) -> None:
    metadata = tmp_path / "metadata.yaml"
    deploykit.deploy(bank_model, target="memory", name="bank", metadata=metadata)
    frame = rows(400)
    frame.to_csv(tmp_path / "in.csv", index=False)
    report = deploykit.batch("bank", tmp_path / "in.csv", tmp_path / "out", metadata=metadata)
    assert report.model_sha256 == load_artifact(bank_model).sha256
    assert_scored(tmp_path / "out", bank_model, frame)


def test_a_name_that_is_neither_file_nor_deployment(tmp_path: Path) -> None:
    rows(10).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(BatchError, match=r"SOURCE 'nope' is neither a model file nor a recorded deployment"):
        deploykit.batch("nope", tmp_path / "in.csv", tmp_path / "out", metadata=tmp_path / "metadata.yaml")


# -- the schema check, row by row ---------------------------------------------------------------

def write_with_bad_row(path: Path, n: int = 2000, bad: int = 1234) -> pd.DataFrame:
    frame = rows(n)
    text = frame.to_csv(index=False).splitlines()
    fields = text[bad + 1].split(",")
    fields[1] = "forty"  # the age column
    text[bad + 1] = ",".join(fields)
    path.write_text("\n".join(text) + "\n")
    return frame


def test_bad_row_fails_naming_file_row_column_and_value(bank_model: Path, tmp_path: Path) -> None:
    write_with_bad_row(tmp_path / "in.csv")
    with pytest.raises(SchemaError) as err:
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", chunk_size="16KB")
    message = str(err.value)
    assert f"{tmp_path / 'in.csv'} row 1235 (line 1236)" in message
    assert "column 'age'" in message and "'forty'" in message and "--on-error skip" in message
    assert err.value.problems[0]["row"] == 1235 and err.value.problems[0]["column"] == "age"
    assert json.loads((tmp_path / "out" / "_report.json").read_text())["status"] == "failed"
    assert not list((tmp_path / "out").glob(".*tmp*")), "a failed part must not stay behind"


def test_bad_row_skipped(bank_model: Path, tmp_path: Path) -> None:
    frame = write_with_bad_row(tmp_path / "in.csv")
    report = deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", on_error="skip", chunk_size="16KB")
    assert (report.rows_in, report.rows_out, report.rows_rejected) == (2000, 1999, 1)
    assert report.problems[0]["row"] == 1235 and report.problems[0]["value"] == "forty"
    assert_scored(tmp_path / "out", bank_model, frame.drop(index=1234).reset_index(drop=True))


def test_bad_row_scored_as_null(bank_model: Path, tmp_path: Path) -> None:
    frame = write_with_bad_row(tmp_path / "in.csv")
    report = deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", on_error="null", chunk_size="16KB")
    assert (report.rows_in, report.rows_out, report.rows_rejected) == (2000, 2000, 1)
    got = read_parts(tmp_path / "out")
    assert got.loc[1234, "prediction"] is None and np.isnan(got.loc[1234, "probability_yes"])
    # a kept column the schema types keeps its type: the bad value is null, like the prediction
    assert pd.isna(got.loc[1234, "age"]) and got.loc[1233, "age"] == frame.loc[1233, "age"]
    good = got.drop(index=1234)
    labels, proba = expected(bank_model, frame.drop(index=1234))
    assert good["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(good["probability_yes"], proba[:, 1])


def test_many_bad_rows_in_one_chunk_are_all_found(bank_model: Path, tmp_path: Path) -> None:
    frame = rows(600)
    frame["duration"] = frame["duration"].astype(float)
    frame.loc[frame.index % 20 == 3, "duration"] = 12.5  # 30 rows, more than a column's report holds
    frame.to_parquet(tmp_path / "in.parquet")
    report = deploykit.batch(bank_model, tmp_path / "in.parquet", tmp_path / "out", on_error="skip")
    assert report.rows_rejected == 30 and report.rows_out == 570
    assert {p["row"] for p in report.problems} == {i + 1 for i in range(600) if i % 20 == 3}


def test_csv_fields_are_typed_like_the_online_codec() -> None:
    arr = pa.array(["41", "41.0", None, "NA", "7"])
    values = csv_column(arr, Column("age", "integer", nullable=True))
    assert list(pd.array(values, dtype="Int64").to_numpy(dtype=object, na_value=None)) == [41, 41, None, None, 7]
    mixed = csv_column(pa.array(["41", "41.7", "abc"]), Column("age", "integer"))
    assert list(mixed) == [41, 41.7, "abc"]
    text = csv_column(pa.array(["NA", "123", None]), Column("job", "string", nullable=True))
    assert list(text) == ["NA", "123", None]
    flags = csv_column(pa.array(["true", "False", "TRUE"]), Column("ok", "boolean"))
    assert list(flags) == [True, False, True]


# -- units and part files -------------------------------------------------------------------------

def test_units_cover_the_file_in_whole_lines(tmp_path: Path) -> None:
    frame = rows(2000)
    frame.to_csv(tmp_path / "in.csv", index=False)
    data = (tmp_path / "in.csv").read_bytes()
    files = find_inputs(tmp_path / "in.csv")
    units = plan_units(files, 10_000)
    assert len(units) > 5
    assert units[0].header == data[: data.index(b"\n") + 1]
    assert units[0].start == len(units[0].header) and units[-1].end == len(data)
    for a, b in zip(units, units[1:]):
        assert a.end == b.start and data[a.end - 1:a.end] == b"\n"
    assert [u.part for u in units[:2]] == ["part-00000-000000", "part-00000-000001"]


def test_parquet_units_are_row_groups(tmp_path: Path) -> None:
    rows(1000).to_parquet(tmp_path / "in.parquet", row_group_size=100)
    units = plan_units(find_inputs(tmp_path / "in.parquet"), 1)
    assert [u.row_groups for u in units] == [(g,) for g in range(10)]
    assert [u.first_row for u in units] == list(range(0, 1000, 100))


def test_resume_keeps_complete_parts_and_cleans_temporary_ones(bank_model: Path, tmp_path: Path) -> None:
    frame = rows(3000)
    frame.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out"
    first = deploykit.batch(bank_model, tmp_path / "in.csv", out, chunk_size="20KB")
    # an interrupted run: the last two parts gone, one half-written under a temporary name,
    # one renamed but killed before the report recorded it
    report = json.loads((out / "_report.json").read_text())
    last, before = first.parts[-1], first.parts[-2]
    (out / last).unlink()
    (out / f".{last}.tmp-999").write_bytes(b"PAR1 half")
    del report["part_rows"][before]
    report["status"] = "running"
    (out / "_report.json").write_text(json.dumps(report))
    kept = {p: (out / p).stat().st_mtime_ns for p in first.parts[:-2]}
    again = deploykit.batch(bank_model, tmp_path / "in.csv", out, chunk_size="20KB", resume=True)
    assert again.parts_resumed == len(first.parts) - 2
    assert again.parts == first.parts and again.rows_in == again.rows_out == 3000
    assert {p: (out / p).stat().st_mtime_ns for p in first.parts[:-2]} == kept, "complete parts are not rewritten"
    assert not list(out.glob(".*"))
    assert_scored(out, bank_model, frame)


def test_resume_refuses_a_different_plan(bank_model: Path, bank_model_v2: Path, tmp_path: Path) -> None:
    rows(300).to_csv(tmp_path / "in.csv", index=False)
    deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out")
    with pytest.raises(BatchError, match=r"written by a different run \(model_sha256 changed\).*--overwrite"):
        deploykit.batch(bank_model_v2, tmp_path / "in.csv", tmp_path / "out", resume=True)


# -- bad input ----------------------------------------------------------------------------------

def test_missing_input_file(bank_model: Path, tmp_path: Path) -> None:
    with pytest.raises(BatchError, match=r"input '.*nothing.csv' does not exist; pass an existing CSV"):
        deploykit.batch(bank_model, tmp_path / "nothing.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_glob_and_folder(bank_model: Path, tmp_path: Path) -> None:
    with pytest.raises(BatchError, match=r"input glob '.*\*.csv' matches no file"):
        deploykit.batch(bank_model, f"{tmp_path}/*.csv", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match=r"input folder '.*empty' holds no .csv, .parquet or .jsonl file"):
        deploykit.batch(bank_model, tmp_path / "empty", tmp_path / "out")


def test_unknown_suffix(bank_model: Path, tmp_path: Path) -> None:
    (tmp_path / "in.xlsx").write_text("x")
    with pytest.raises(BatchError, match=r"suffix '.xlsx'.*\.csv, \.parquet"):
        deploykit.batch(bank_model, tmp_path / "in.xlsx", tmp_path / "out")


def test_csv_without_header(bank_model: Path, tmp_path: Path) -> None:
    rows(50)[train_model.COLUMNS].to_csv(tmp_path / "in.csv", index=False, header=False)
    with pytest.raises(BatchError, match=r"CSV file '.*in.csv' has no header line \(its first line is '\d+,.*'\); "
                                         r"add a first line naming the columns: age,job,marital"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out")


def test_csv_with_a_column_missing(bank_model: Path, tmp_path: Path) -> None:
    rows(50).drop(columns=["balance"]).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(BatchError, match=r"input file '.*in.csv' lacks column\(s\) 'balance' that the model needs"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out")


def test_existing_output_folder_is_refused_unless_overwrite(bank_model: Path, tmp_path: Path) -> None:
    rows(100).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "yesterday.parquet").write_text("old")
    with pytest.raises(BatchError, match=r"output folder '.*out' already holds 1 file\(s\); pass --overwrite"):
        deploykit.batch(bank_model, tmp_path / "in.csv", out)
    with pytest.raises(BatchError, match=r"holds files but no _report.json"):
        deploykit.batch(bank_model, tmp_path / "in.csv", out, resume=True)
    deploykit.batch(bank_model, tmp_path / "in.csv", out, overwrite=True)
    assert not (out / "yesterday.parquet").exists(), "never mixed: --overwrite empties the folder first"
    assert len(read_parts(out)) == 100


def test_unknown_engine_lists_installed_ones_and_extras(bank_model: Path, tmp_path: Path) -> None:
    rows(10).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(BatchError, match=r"unknown batch engine 'spark'; installed engines: dask .*"
                                         r"deploykit\[dask\].*local.*deploykit_register_engines"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", engine="spark")


def test_engine_with_missing_modules_names_the_extra() -> None:
    registry = EngineRegistry()
    registry.add("ray", "nowhere:RayEngine", requires=("ray_not_installed",), extra="ray")
    with pytest.raises(BatchError, match=r"needs ray_not_installed.*pip install 'deploykit\[ray\]'"):
        registry.info("ray").load()
    with pytest.raises(BatchError, match=r"ray \(needs pip install 'deploykit\[ray\]'\)"):
        registry.info("spark")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_input_with_zero_rows(fmt: str, bank_model: Path, tmp_path: Path) -> None:
    empty = rows(5).iloc[:0]
    path = tmp_path / f"in.{fmt}"
    empty.to_csv(path, index=False) if fmt == "csv" else empty.to_parquet(path)
    with pytest.raises(BatchError, match=r"has 0 rows .*nothing to score"):
        deploykit.batch(bank_model, path, tmp_path / "out")


def test_bad_options(bank_model: Path, tmp_path: Path) -> None:
    rows(10).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(BatchError, match=r"on_error is 'ignore'; use one of fail, skip, null"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", on_error="ignore")
    with pytest.raises(BatchError, match=r"--keep names column\(s\) 'customer'"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", keep=["customer"])
    with pytest.raises(BatchError, match=r"--resume .* or --overwrite .*not both"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", resume=True, overwrite=True)


def test_import_deploykit_stays_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, deploykit; deploykit.batch; print(sorted(m for m in ('pyarrow', 'pandas', 'fsspec') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
