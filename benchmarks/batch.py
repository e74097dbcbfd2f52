"""Batch benchmark: `deploykit batch` (local engine, 1 and 2 workers; dask LocalCluster) against
in-process `pipe.predict_proba` of the whole frame loaded with pandas, on generated bank rows.

    python benchmarks/batch.py                          # 1M and 4M rows, CSV and Parquet -> docs/benchmarks-batch.md
    python benchmarks/batch.py --rows 200000,800000     # smaller files, same table
    python benchmarks/batch.py --quick                  # 100k and 400k rows, no dask: a smoke run

Every measurement is its own process, run under ``/usr/bin/time -v``: its peak RSS is the
largest of the process and the children it waited for (the local engine's worker processes, a
LocalCluster's workers), that run's alone.

* floor: ``pandas.read_csv``/``read_parquet`` of the whole file, then one ``predict_proba`` of
  the whole frame. Its rows/s counts the ``predict_proba`` call only (the model's own speed on
  one core, the figure the goals compare with); the read is shown beside it.
* deploykit: ``python -m deploykit batch MODEL INPUT OUT --json``; rows/s is rows over the
  run's own ``seconds`` in ``_report.json`` (planning, reading, the schema check of every row,
  scoring, writing Parquet parts; not the interpreter start and imports, shown as wall time).

The model is the example bank pipeline (OneHotEncoder + StandardScaler, RandomForest 50
trees, max_depth 8, n_jobs=1) trained on 5,000 rows; the input is ``make_data(rows, seed=3)``
with an ``id`` column. The machine is shared: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "examples"))


def make_model(folder: Path) -> Path:
    """The example pipeline (50 trees) saved with its schema."""
    import joblib
    import train_model

    from deploykit.schema import Schema

    model, frame = train_model.train(rows=5000, seed=0, n_estimators=50)
    path = folder / "bank-model.joblib"
    joblib.dump(model, path)
    (folder / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return path


def make_inputs(folder: Path, rows: int) -> dict[str, Path]:
    """``rows`` generated bank rows as CSV and Parquet (row groups of 131,072 rows), written in slices."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import train_model

    csv_path, pq_path = folder / f"bank-{rows}.csv", folder / f"bank-{rows}.parquet"
    step = 500_000
    csv_writer = pq_writer = None
    for i, start in enumerate(range(0, rows, step)):
        n = min(step, rows - start)
        frame, _ = train_model.make_data(rows=n, seed=3 + i)
        frame.insert(0, "id", np.arange(start, start + n))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if csv_writer is None:
            csv_writer = pcsv.CSVWriter(str(csv_path), table.schema)
            pq_writer = pq.ParquetWriter(str(pq_path), table.schema)
        csv_writer.write_table(table)
        assert pq_writer is not None
        pq_writer.write_table(table, row_group_size=131_072)
    assert csv_writer is not None and pq_writer is not None
    csv_writer.close()
    pq_writer.close()
    return {"csv": csv_path, "parquet": pq_path}


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, str]:
    """Run ``cmd`` under ``/usr/bin/time -v``; its wall seconds, peak RSS in MiB, stdout and stderr.

    Not ``os.wait4`` from here: a child forked from this (large) process starts with its
    parent's high-water mark, which ``ru_maxrss`` keeps across exec. ``time`` is small, so
    the maximum it reports (the command and the children it waited for) is the command's own."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=out, stderr=err, env=env, check=False)
    wall = time.monotonic() - start
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stdout[-2000:]} {stderr[-2000:]}")
    kib = [line.split(":")[1] for line in stderr.splitlines() if "Maximum resident set size" in line]
    return wall, int(kib[-1]) // 1024, stdout, stderr


def floor_main(model: str, path: str) -> None:
    """The floor, in its own process: read the whole file with pandas, one predict_proba."""
    import joblib
    import pandas as pd

    pipe = joblib.load(model)
    start = time.perf_counter()
    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    read = time.perf_counter() - start
    start = time.perf_counter()
    proba = pipe.predict_proba(frame[list(pipe.feature_names_in_)])
    predict = time.perf_counter() - start
    print(json.dumps({"rows": len(frame), "read_s": read, "predict_s": predict, "check": float(proba[:, 1].sum())}))


def measure(kind: str, model: Path, path: Path, out: Path) -> dict[str, Any]:
    """One run of ``kind`` (floor, local-1, local-2, dask-2) on ``path``."""
    if kind == "floor":
        wall, rss, stdout, _ = run_measured([sys.executable, __file__, "--floor", str(model), str(path)])
        data = json.loads(stdout)
        return {"rows": data["rows"], "seconds": data["predict_s"], "read_s": data["read_s"], "wall": wall, "rss": rss}
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "deploykit", "batch", str(model), str(path), str(out), "--json", "--keep", "id"]
    if kind == "local-2":
        cmd += ["--workers", "2"]
    elif kind == "dask-2":
        cmd += ["--engine", "dask", "--workers", "2"]
    wall, rss, stdout, _ = run_measured(cmd)
    report = json.loads(stdout)
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": report["rows_out"], "seconds": report["seconds"], "wall": wall, "rss": rss,
            "parts": report["parts"]}


LABELS = {"floor": "floor: pandas read + one `predict_proba`", "local-1": "deploykit batch, local, 1 worker",
          "local-2": "deploykit batch, local, 2 workers", "dask-2": "deploykit batch, dask LocalCluster (2 x 1 thread)"}


def main() -> None:
    """Command-line entry point."""
    if len(sys.argv) == 4 and sys.argv[1] == "--floor":
        floor_main(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,4000000", help="comma-separated file sizes in rows")
    parser.add_argument("--kinds", default="floor,local-1,local-2,dask-2")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--quick", action="store_true", help="100k and 400k rows, no dask")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-batch.md"))
    parser.add_argument("--work", default=None, help="folder for the generated files [default: a temp dir]")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.kinds = "100000,400000", "floor,local-1,local-2"
    sizes = [int(r) for r in args.rows.split(",")]
    kinds = args.kinds.split(",")
    formats = args.formats.split(",")
    work = Path(args.work or tempfile.mkdtemp(prefix="deploykit-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work)
    results: dict[tuple[int, str, str], dict[str, Any]] = {}
    for rows in sizes:
        t = time.monotonic()
        inputs = make_inputs(work, rows)
        print(f"generated {rows:,} rows in {time.monotonic() - t:.0f} s "
              f"(CSV {inputs['csv'].stat().st_size / 2**20:.0f} MiB)", flush=True)
        for fmt in formats:
            for kind in kinds:
                result = measure(kind, model, inputs[fmt], work / "out")
                results[(rows, fmt, kind)] = result
                print(f"{rows:>9,} {fmt:<8} {kind:<8} {result['rows'] / result['seconds']:>10,.0f} rows/s "
                      f"{result['rss']:>6} MiB  wall {result['wall']:.1f} s", flush=True)
        for path in inputs.values():
            path.unlink()
    Path(args.out).write_text(render(results, sizes, kinds, formats))
    print(f"wrote {args.out}")


def render(results: dict[tuple[int, str, str], dict[str, Any]], sizes: list[int], kinds: list[str],
           formats: list[str]) -> str:
    """The Markdown results page."""
    from importlib.metadata import version

    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Batch scoring benchmark", "",
        f"Written by `python benchmarks/batch.py --rows {','.join(map(str, sizes))}` on {when} "
        f"({os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}, scikit-learn {version('scikit-learn')}, pyarrow {version('pyarrow')}, "
        f"dask {version('dask')}). The machine is shared with other work, so figures move between runs: "
        "compare figures from one run only.", "",
        "Model: the example bank pipeline (OneHotEncoder + StandardScaler, RandomForest 50 trees, max_depth 8, "
        "n_jobs=1) trained on 5,000 rows. Input: `make_data(rows, seed=3)` plus an `id` column, as CSV and as "
        "Parquet (row groups of 131,072 rows). Output: Parquet parts with `id`, `prediction` and one "
        "probability column per class (`--keep id`), default chunk size (16 MiB of input per part).", "",
        "Rows/s: the floor counts its one `predict_proba` call only (the read is shown apart); deploykit counts "
        "its whole run as recorded in `_report.json` (plan, read, schema check of every row, score, write), "
        "without the interpreter start and imports (in the wall time). Peak RSS: `/usr/bin/time -v`'s maximum "
        "resident set size, the largest of the run's process and the children it reaped (worker processes).", "",
        "| rows | format | run | rows/s | x floor | seconds | wall | peak RSS |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for rows in sizes:
        for fmt in formats:
            floor = results.get((rows, fmt, "floor"))
            for kind in kinds:
                r = results.get((rows, fmt, kind))
                if r is None:
                    continue
                rate = r["rows"] / r["seconds"]
                ratio = f"{rate / (floor['rows'] / floor['seconds']):.2f}x" if floor else "n/a"
                extra = f" (+ read {r['read_s']:.1f} s)" if kind == "floor" else ""
                lines.append(f"| {rows:,} | {fmt} | {LABELS[kind]} | {rate:,.0f} | {ratio} | "
                             f"{r['seconds']:.1f}{extra} | {r['wall']:.1f} s | {r['rss']:,} MiB |")
    lines += ["", "## Goals", "", "| goal | wanted | measured | |", "|---|---|---|---|"]
    big, small = max(sizes), min(sizes)
    for fmt in formats:
        floor = results.get((big, fmt, "floor"))
        for kind, want in (("local-1", 0.9), ("local-2", 1.6)):
            r = results.get((big, fmt, kind))
            if floor and r:
                ratio = (r["rows"] / r["seconds"]) / (floor["rows"] / floor["seconds"])
                lines.append(f"| {LABELS[kind]} vs floor rows/s ({big:,} rows, {fmt}) | >= {want}x | {ratio:.2f}x | "
                             f"{'met' if ratio >= want else f'not met by {want - ratio:.2f}x'} |")
        a, b = results.get((small, fmt, "local-1")), results.get((big, fmt, "local-1"))
        if a and b and big != small:
            ratio = b["rss"] / a["rss"]
            lines.append(f"| local engine peak RSS, {big:,} vs {small:,} rows ({fmt}) | <= 1.2x | {ratio:.2f}x "
                         f"({b['rss']:,} vs {a['rss']:,} MiB) | {'met' if ratio <= 1.2 else 'not met'} |")
        fa, fb = results.get((small, fmt, "floor")), results.get((big, fmt, "floor"))
        if fa and fb and big != small:
            lines.append(f"| for comparison: floor (pandas) peak RSS, {big:,} vs {small:,} rows ({fmt}) | grows "
                         f"with the file | {fb['rss'] / fa['rss']:.2f}x ({fb['rss']:,} vs {fa['rss']:,} MiB) | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
