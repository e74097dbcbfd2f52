"""Benchmark: async jobs on the local server, against in-process predict and against idle serving.

    python benchmarks/async_jobs.py            # 3 rounds, 10 s wrk phases -> docs/benchmarks/async_jobs.md
    python benchmarks/async_jobs.py --quick    # 1 round, 4 s phases: a smoke run

A real local deployment (``deploykit.deploy(..., target="local")``, default settings: one serving
worker, one job worker) serves the example bank pipeline. Two figures:

1. **Rows/s of a 100,000-row CSV job** (``deploykit.submit`` -> ``wait`` -> ``result``: upload,
   queue, scoring with deploykit's batch machinery, writing the CSV, download), and the server's
   own time (started -> finished), against in-process scoring of the same file
   (``pandas.read_csv`` + the schema check + ``Artifact.predict``).
2. **/predict latency at c=20** (wrk, one thread, one row per request) while the server is idle,
   and while 100,000-row jobs run back to back (one queued at a time) for the whole phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "examples")]

ROWS = 100_000


def _in_process(model: Path, data: Path) -> float:
    import pandas as pd

    from deploykit.artifact import load_artifact

    artifact = load_artifact(model)
    started = time.perf_counter()
    frame = pd.read_csv(data)
    preds = artifact.predict(artifact.schema.validate(frame))
    assert len(preds) == ROWS
    return time.perf_counter() - started


def _job(name: str, data: Path, out: Path) -> tuple[float, float]:
    import deploykit

    started = time.perf_counter()
    job = deploykit.submit(name, data)
    doc = job.wait(timeout=600, poll=0.05)
    job.result(out)
    total = time.perf_counter() - started
    server = (dt.datetime.fromisoformat(doc["finished_at"]) - dt.datetime.fromisoformat(doc["started_at"]))
    assert doc["rows_out"] == ROWS
    job.cancel()  # removes the finished job and its files
    return total, server.total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, 4 s phases (a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "async_jobs.md"))
    args = parser.parse_args()
    rounds, seconds = (1, 4.0) if args.quick else (3, 10.0)

    import json

    import joblib
    import orjson
    import train_model
    from _load import Request, run_load_wrk

    import deploykit
    from deploykit.schema import Schema

    work = Path(tempfile.mkdtemp(prefix="deploykit-bench-jobs-"))
    os.chdir(work)
    (work / "credentials.yaml").write_text("local:\n  port: 0\n")
    model, frame = train_model.train()
    joblib.dump(model, work / "bank-model.joblib")
    (work / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    data_frame, _ = train_model.make_data(rows=ROWS, seed=3)
    data = work / "rows.csv"
    data_frame.to_csv(data, index=False)
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in data_frame.iloc[0].to_dict().items()}
    dep = deploykit.deploy(str(work / "bank-model.joblib"), target="local", name="bench")
    port = int(dep.ids["port"])
    request = Request("/predict", orjson.dumps([row]))
    try:
        local, total, server = [], [], []
        for _ in range(rounds):
            local.append(_in_process(work / "bank-model.joblib", data))
            t, s = _job("bench", data, work / "out.csv")
            total.append(t)
            server.append(s)
        idle, busy, jobs_done = [], [], []
        for _ in range(rounds):
            idle.append(run_load_wrk("127.0.0.1", port, request, 20, seconds, warmup=1.0))
            stop = threading.Event()
            done = [0]

            def keep_busy(flag: threading.Event = stop, count: list[int] = done) -> None:
                while not flag.is_set():
                    _job("bench", data, work / "busy.csv")
                    count[0] += 1

            thread = threading.Thread(target=keep_busy, daemon=True)
            thread.start()
            time.sleep(1.0)  # the first job is running before wrk starts
            busy.append(run_load_wrk("127.0.0.1", port, request, 20, seconds, warmup=0))
            stop.set()
            thread.join()
            jobs_done.append(done[0])
    finally:
        deploykit.delete("bench")

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def ms(results: list[Any], p: int) -> float:
        return med([r.percentiles[p] * 1000 for r in results])

    errors_idle, errors_busy = sum(r.errors for r in idle), sum(r.errors for r in busy)
    lines = [
        "# Async jobs on the local server",
        "",
        f"`python benchmarks/async_jobs.py{' --quick' if args.quick else ''}` on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores (shared), Python {platform.python_version()}, {dt.date.today().isoformat()}; "
        f"medians of {rounds} round(s). The example bank pipeline (a random forest), default local settings "
        "(one serving worker, one job worker, micro-batching 2 ms).",
        "",
        f"## A {ROWS:,}-row CSV job against in-process scoring",
        "",
        "| path | seconds | rows/s |",
        "|---|---|---|",
        f"| in process: `read_csv` + schema check + `Artifact.predict` | {med(local):.2f} | {ROWS / med(local):,.0f} |",
        f"| job, server side (started -> finished: read, check, score, write CSV) | {med(server):.2f} | "
        f"{ROWS / med(server):,.0f} |",
        f"| job, client side (`submit` -> `wait` -> `result`: upload, queue, score, download) | {med(total):.2f} | "
        f"{ROWS / med(total):,.0f} |",
        "",
        f"## `/predict` at c=20 (wrk, one row per request, {seconds:g} s phases)",
        "",
        "| server | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
        f"| idle | {med([r.rps for r in idle]):,.0f} | {ms(idle, 50):.1f} | {ms(idle, 99):.1f} | {errors_idle} |",
        f"| while {ROWS:,}-row jobs run back to back ({med([float(n) for n in jobs_done]):g} finished per phase) | "
        f"{med([r.rps for r in busy]):,.0f} | {ms(busy, 50):.1f} | {ms(busy, 99):.1f} | {errors_busy} |",
        "",
        "A job runs in a thread of the serving process at nice 10 (never on its event loop); on two shared "
        "cores it still competes with the request path for the GIL, which is most of the latency cost above. "
        "Jobs of an async script run in a child process instead (also at nice 10).",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
