"""The dask engine against a real scheduler with two worker processes, and against a LocalCluster."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pandas as pd
import pytest

import deploykit
from deploykit.artifact import load_artifact
from deploykit.errors import BatchError

from .conftest import DaskCluster
from .helpers import assert_scored


def test_dask_cluster_scores_like_predict_and_like_the_local_engine(
        bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], dask_cluster: DaskCluster, tmp_path: Path) -> None:
    path, frame = bank_csv
    report = deploykit.batch(bank_model, path, tmp_path / "dask", engine="dask", address=dask_cluster.address,
                             chunk_size="40KB")
    assert report.rows_in == report.rows_out == len(frame) and len(report.parts) > 2
    assert report.versions["workers"] == 2 and report.versions["scheduler"] == dask_cluster.address
    assert_scored(tmp_path / "dask", bank_model, frame)
    local = deploykit.batch(bank_model, path, tmp_path / "local", chunk_size="40KB")
    assert local.parts == report.parts
    for part in report.parts:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / part),
                                      pd.read_parquet(tmp_path / "local" / part))


def test_scheduler_address_from_the_environment(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame],
                                                dask_cluster: DaskCluster, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.address)
    report = deploykit.batch(bank_model, bank_csv[0], tmp_path / "out", engine="dask", on_error="skip")
    assert report.versions["scheduler"] == dask_cluster.address


def test_bad_row_on_a_worker_names_file_and_row(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame],
                                                dask_cluster: DaskCluster, tmp_path: Path) -> None:
    frame = bank_csv[1].astype({"job": object})
    frame.loc[3100, "job"] = None
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(Exception, match=r"in.csv row 3101 \(line 3102\): .*'job'"):
        deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "out", engine="dask",
                        address=dask_cluster.address, chunk_size="40KB")
    null = deploykit.batch(bank_model, tmp_path / "in.csv", tmp_path / "null", engine="dask",
                           address=dask_cluster.address, chunk_size="40KB", on_error="null")
    assert (null.rows_out, null.rows_rejected) == (len(frame), 1)
    assert null.problems[0]["row"] == 3101


def test_workers_with_other_versions_than_the_model_are_refused(
        bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], dask_cluster: DaskCluster, tmp_path: Path) -> None:
    # The workers report their real versions (client.run); the model says it was fitted with
    # another scikit-learn, as a model pickled elsewhere would.
    artifact = dataclasses.replace(load_artifact(bank_model), framework_version="0.24.2")
    import sklearn

    with pytest.raises(BatchError, match=rf"worker tcp://127.0.0.1:\d+ has scikit-learn {sklearn.__version__}, "
                                         r"the model needs 0.24.2.*Install the same versions on the workers"):
        deploykit.batch(artifact, bank_csv[0], tmp_path / "out", engine="dask", address=dask_cluster.address)
    assert not list((tmp_path / "out").glob("part-*")), "nothing is scored before the check"


def test_local_cluster(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, frame = bank_csv
    report = deploykit.batch(bank_model, path, tmp_path / "out", engine="dask", workers=2, chunk_size="64KB")
    assert report.versions["workers"] == 2
    assert_scored(tmp_path / "out", bank_model, frame)


@pytest.mark.timeout(120)
def test_a_scheduler_that_does_not_answer(bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_DASK_CONNECT_TIMEOUT", "3")
    with socket.socket() as silent:  # accepts connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(BatchError, match=rf"the Dask scheduler at {address} did not answer within 3 s"):
            deploykit.batch(bank_model, bank_csv[0], tmp_path / "out", engine="dask", address=address)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    with pytest.raises(BatchError, match=r"did not answer within 3 s .*start it \('dask scheduler'\)"):
        deploykit.batch(bank_model, bank_csv[0], tmp_path / "out2", engine="dask", address=closed)
