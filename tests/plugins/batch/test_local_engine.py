"""The local engine: in process and with worker processes, equal to in-process predict/predict_proba."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import deploykit
from deploykit.batch import get_engines
from deploykit.errors import BatchError

from .helpers import assert_scored, read_parts


def test_engines_are_registered_by_the_plugin() -> None:
    names = get_engines().names()
    assert names == sorted(names) and {"local", "dask"} <= set(names)
    assert get_engines().info("dask").extra == "dask" and get_engines().info("local").extra == "batch"


@pytest.mark.parametrize("workers", [1, 2])
def test_local_engine_equals_predict(workers: int, bank_model: Path, bank_csv: tuple[Path, pd.DataFrame],
                                     tmp_path: Path) -> None:
    path, frame = bank_csv
    report = deploykit.batch(bank_model, path, tmp_path / "out", workers=workers, chunk_size="40KB")
    assert report.rows_in == report.rows_out == len(frame) and len(report.parts) > 2
    assert report.versions["workers"] == workers
    assert_scored(tmp_path / "out", bank_model, frame)


def test_worker_processes_write_what_one_process_writes(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame],
                                                        tmp_path: Path) -> None:
    path, _ = bank_csv
    one = deploykit.batch(bank_model, path, tmp_path / "one", chunk_size="40KB")
    two = deploykit.batch(bank_model, path, tmp_path / "two", chunk_size="40KB", workers=2)
    assert one.parts == two.parts
    for part in one.parts:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / part), pd.read_parquet(tmp_path / "two" / part))


def test_a_bad_row_in_a_worker_fails_the_run(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame],
                                             tmp_path: Path) -> None:
    _, frame = bank_csv
    bad = frame.astype({"balance": object})
    bad.loc[2500, "balance"] = "lots"
    bad.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(Exception, match=r"in.csv row 2501 \(line 2502\): column 'balance'.*'lots'"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", chunk_size="40KB", workers=2)
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_progress_reports_rows_and_eta(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, _ = bank_csv
    seen: list[str] = []
    deploykit.batch(bank_model, path, tmp_path / "out", chunk_size="40KB", progress=seen.append)
    assert any("4,000 rows" in m and "rows/s" in m and "ETA" in m for m in seen), seen


def test_csv_parts(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, frame = bank_csv
    deploykit.batch(bank_model, path, tmp_path / "out", output_format="csv", keep=["id"])
    got = read_parts(tmp_path / "out")
    assert list(got.columns) == ["id", "prediction", "probability_no", "probability_yes"]
    assert len(got) == len(frame)


def test_address_is_for_dask(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    with pytest.raises(BatchError, match=r"--address tcp://x:1 names a Dask scheduler; pass --engine dask"):
        deploykit.batch(bank_model, bank_csv[0], tmp_path / "out", address="tcp://x:1")
