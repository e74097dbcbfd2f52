"""What metrics and logged inputs cost the local server: c=8 throughput with each turned on, against off.

    python benchmarks/monitoring_cost.py [--rounds 3] [--duration 8]

Three ``deploykit serve`` processes (1 worker, micro-batching 2 ms) serve the example bank
pipeline: ``--no-metrics``, the default (``/metrics`` on), and ``--log-inputs`` (metrics and
logged inputs). Each round loads them in turn with the serving benchmark's closed-loop client
(wrk when /usr/bin/wrk exists, else the asyncio client), one-row ``/predict`` requests over 8
keep-alive connections; the ratio is the median requests/s of each mode over that of ``off``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "examples")]

from _load import WRK, Request, run_load, run_load_wrk  # noqa: E402

MODES = {"off": ["--no-metrics"], "metrics": [], "metrics+log_inputs": ["--log-inputs"]}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()

    import joblib
    import train_model

    from deploykit.schema import Schema

    work = Path(tempfile.mkdtemp(prefix="dk-monitoring-"))
    model, frame = train_model.train(rows=2000, seed=0, n_estimators=50)
    joblib.dump(model, work / "bank.joblib")
    (work / "bank.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[0].to_dict().items()}
    request = Request("/predict", json.dumps([row]).encode())
    load = run_load_wrk if Path(WRK).exists() else run_load
    servers, ports = {}, {}
    try:
        for mode, flags in MODES.items():
            ports[mode] = _free_port()
            servers[mode] = subprocess.Popen(
                [sys.executable, "-m", "deploykit", "serve", str(work / "bank.joblib"), "--schema",
                 str(work / "bank.schema.json"), "--port", str(ports[mode]), "--log-inputs-dir",
                 str(work / "inputs" / mode), *flags], cwd=work, stderr=subprocess.DEVNULL)
        for port in ports.values():
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
        results: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode, port in ports.items():
                result = load("127.0.0.1", port, request, 8, args.duration, args.warmup)
                results[mode].append(result.rps)
                print(f"{mode:<20} {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                      f"  errors {result.errors}", flush=True)
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            proc.wait(30)
    base = statistics.median(results["off"])
    for mode, values in results.items():
        print(f"{mode:<20} median {statistics.median(values):8.0f} req/s  ratio {statistics.median(values) / base:.3f}")
    logged = sum(1 for _ in (work / "inputs" / "metrics+log_inputs").glob("inputs-*.parquet"))
    print(f"logged-input files written: {logged}")


if __name__ == "__main__":
    main()
