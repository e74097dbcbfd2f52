"""``deploykit batch`` as a real process: output, --json, errors, and kill -9 then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from .conftest import bank_frame
from .helpers import assert_scored, read_parts


def test_batch_command_scores_and_prints_a_summary(cli, bank_model: Path, bank_csv: tuple[Path, pd.DataFrame],
                                                   project) -> None:
    path, frame = bank_csv
    result = cli("batch", bank_model, path, "out", "--chunk-size", "64KB")
    assert result.code == 0, result.err
    assert "scored 4,000 rows into" in result.out and "rows/s" in result.out and "_report.json" in result.out
    assert_scored(project.dir / "out", bank_model, frame)


def test_batch_json_is_one_quiet_object(cli, bank_model: Path, bank_csv: tuple[Path, pd.DataFrame], project) -> None:
    result = cli("batch", bank_model, bank_csv[0], "out", "--json", "--keep", "id", "--format", "csv")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["status"] == "succeeded" and summary["rows_in"] == 4000 and summary["engine"] == "local"
    assert summary["output_format"] == "csv" and isinstance(summary["parts"], int)
    assert result.err == ""
    assert list(read_parts(project.dir / "out").columns) == ["id", "prediction", "probability_no", "probability_yes"]


def test_batch_errors_exit_1_with_the_message(cli, bank_model: Path, bank_csv: tuple[Path, pd.DataFrame]) -> None:
    result = cli("batch", bank_model, bank_csv[0], "out", "--engine", "ray", "--json")
    assert result.code == 1
    assert result.json()["type"] == "BatchError" and "installed engines: dask" in result.json()["error"]
    result = cli("batch", bank_model, "missing.csv", "out")
    assert result.code == 1 and "deploykit: error: input 'missing.csv' does not exist" in result.err


def test_batch_is_listed_in_help(cli) -> None:
    result = cli("--help")
    assert result.code == 0 and "batch" in result.out
    result = cli("batch", "--help")
    assert "--on-error [fail|skip|null]" in result.out and "--resume" in result.out


def test_kill_9_in_the_middle_then_resume(bank_model: Path, tmp_path: Path) -> None:
    frame = bank_frame(30_000, seed=9)
    frame.to_csv(tmp_path / "big.csv", index=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deploykit", "batch", str(bank_model), str(tmp_path / "big.csv"), str(out),
           "--chunk-size", "6KB", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(list(out.glob("part-*"))) < 10:
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "no parts appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    report = json.loads((out / "_report.json").read_text())
    assert report["status"] == "running", "a killed run is not reported as complete"
    refused = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert refused.returncode == 1 and "--resume to finish an interrupted run" in refused.stdout
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["parts_resumed"] >= 9 and summary["rows_in"] == summary["rows_out"] == 30_000
    assert summary["parts"] > summary["parts_resumed"], "the run was killed before its last part"
    assert not list(out.glob(".*")), "no temporary part is left"
    assert_scored(out, bank_model, frame)
