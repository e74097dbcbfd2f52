"""Time from a deploy call to a healthy MLflow scoring endpoint: deploykit vs the manual seed flow.

    python benchmarks/mlflow_deploy.py [--rounds 3] [--out docs/benchmarks-mlflow.md]

Starts a real ``mlflow server`` (sqlite, local artifacts) on a free port, trains the seed's bank
model (50 trees, 5,000 rows), then alternates rounds of:

* **deploykit**: ``deploykit.deploy(model.joblib, target="mlflow")`` (log + register a version,
  ``mlflow models serve`` behind the stable front, alias moved when healthy, smoke test);
* **manual**: what the seed did by hand with MLflow's defaults: ``mlflow.sklearn.log_model(...,
  registered_model_name=...)`` (cloudpickle, since MLflow 3's default skops refuses the forest),
  ``set_registered_model_alias``, ``mlflow models serve -m models:/NAME@production --env-manager local``,
  then poll ``/health``.

Each round runs in a fresh interpreter and is timed from its start, imports included, as a CLI
call would be. Phases come from deploykit's progress messages and, inside the scoring server's
start, from its log: MLflow's CLI logs ``=== Running command`` once it has imported itself and
downloaded the model (twice) and execs uvicorn; uvicorn logs ``Application startup complete``
once the app has imported MLflow again and loaded the model. The results table is written to
``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = {"cli_done": "=== Running command", "app_ready": "Application startup complete"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    return False


class LogWatch:
    """Records when marker lines first appear in the log files of a folder (polled every 10 ms)."""

    def __init__(self, folder: Path, t0: float) -> None:
        self.folder, self.t0 = folder, t0
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.seen) < len(MARKERS):
            for log in self.folder.glob("**/*.log"):
                with contextlib.suppress(OSError):
                    text = log.read_text(errors="replace")
                    for key, marker in MARKERS.items():
                        if key not in self.seen and marker in text:
                            self.seen[key] = time.monotonic() - self.t0
            time.sleep(0.01)

    def stop(self) -> dict[str, float]:
        """Stop watching; the markers seen, in seconds since ``t0``."""
        self._stop.set()
        self._thread.join()
        return self.seen


# -- one round, in a fresh interpreter -----------------------------------------------------------

def round_deploykit(folder: Path, tracking_uri: str, model: Path, t0: float) -> dict[str, float]:
    """``deploykit.deploy`` to the mlflow target; phase marks from its progress messages."""
    os.chdir(folder)
    (folder / "credentials.yaml").write_text(f"mlflow:\n  tracking_uri: {tracking_uri}\n")
    watch = LogWatch(folder / ".deploykit", t0)
    marks: dict[str, float] = {}
    firsts = {"checking the MLflow tracking server": "check", "logging the model": "log",
              "starting the MLflow scoring server": "serve", "waiting for the MLflow scoring server": "wait",
              "pointing the alias": "alias"}

    def progress(message: str) -> None:
        for prefix, key in firsts.items():
            if message.startswith(prefix) and key not in marks:
                marks[key] = time.monotonic() - t0

    import deploykit

    marks["imported"] = time.monotonic() - t0
    dep = deploykit.deploy(model, target="mlflow", name=folder.name, progress=progress)
    marks["done"] = time.monotonic() - t0
    marks.update(watch.stop())
    assert _healthy(dep.url), dep.url
    marks["healthy"] = marks["done"]
    row = json.loads(model.with_name("bank-model.schema.json").read_text())["example"]
    marks.update(_latencies(dep.url, f"http://127.0.0.1:{dep.ids['server_port']}", row))
    deploykit.delete(dep.name)
    return marks


def _latencies(front: str, direct: str, row: dict[str, object], n: int = 200) -> dict[str, float]:
    """p50 of 1-row /invocations requests (keep-alive) through the front and straight to the
    scoring server, interleaved so both see the same machine load; in milliseconds."""
    import http.client
    from urllib.parse import urlsplit

    body = json.dumps({"dataframe_split": {"columns": list(row), "data": [list(row.values())]}})
    conns = {k: http.client.HTTPConnection(urlsplit(u).hostname, urlsplit(u).port, timeout=30)
             for k, u in (("front", front), ("direct", direct))}
    times: dict[str, list[float]] = {"front": [], "direct": []}
    for i in range(n):
        for key in ("front", "direct") if i % 2 else ("direct", "front"):
            start = time.perf_counter()
            conns[key].request("POST", "/invocations", body, {"Content-Type": "application/json"})
            resp = conns[key].getresponse()
            resp.read()
            assert resp.status == 200
            times[key].append((time.perf_counter() - start) * 1000)
    for conn in conns.values():
        conn.close()
    return {f"p50_{k}_ms": statistics.median(v) for k, v in times.items()}


def round_manual(folder: Path, tracking_uri: str, model: Path, t0: float) -> dict[str, float]:
    """The seed's hand-written flow with MLflow's own API and CLI."""
    marks: dict[str, float] = {}
    import joblib
    import mlflow
    import mlflow.sklearn
    import pandas as pd

    marks["imported"] = time.monotonic() - t0
    name = folder.name
    estimator = joblib.load(model)
    example = pd.DataFrame([json.loads(model.with_name("bank-model.schema.json").read_text())["example"]])
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("manual")
    marks["check"] = time.monotonic() - t0
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(estimator, name="model", registered_model_name=name, input_example=example,
                                        serialization_format="cloudpickle")
    marks["log"] = time.monotonic() - t0
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, "production", info.registered_model_version)
    marks["alias"] = time.monotonic() - t0
    port = _free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # a venv "activated" by hand
    log = folder / "serve.log"
    watch = LogWatch(folder, t0)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@production",
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    marks["serve"] = time.monotonic() - t0
    try:
        while not _healthy(f"http://127.0.0.1:{port}"):
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.1)
        marks["healthy"] = marks["done"] = time.monotonic() - t0
    finally:
        marks.update(watch.stop())
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return marks


# -- orchestration -------------------------------------------------------------------------------

def _start_tracking_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with (folder / "mlflow-server.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                 f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root", str(folder / "artifacts"),
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("mlflow server did not start: " + (folder / "mlflow-server.log").read_text()[-2000:])
        time.sleep(0.2)
    return proc, url


def _train(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    import joblib
    import train_model

    from deploykit.schema import Schema

    model, frame = train_model.train(rows=5000, seed=0, n_estimators=50)
    path = folder / "bank-model.joblib"
    joblib.dump(model, path)
    (folder / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return path


def _run_round(flow: str, folder: Path, tracking_uri: str, model: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--one", flow, "--dir", str(folder), "--tracking-uri", tracking_uri,
                          "--model", str(model)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{flow} round failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _phases(flow: str, m: dict[str, float]) -> dict[str, float]:
    """Durations of the phases, in seconds, from the marks of one round."""
    serve = m["serve"]
    cli, app = m.get("cli_done", serve), m.get("app_ready", m.get("cli_done", serve))
    if flow == "deploykit":
        return {"Python start, imports, load model file": m["check"],
                "tracking server check (incl. import mlflow)": m["log"] - m["check"],
                "log model + register version": serve - m["log"],
                "scoring server: mlflow CLI (import, 2 model downloads)": cli - serve,
                "scoring server: uvicorn app (import, load model)": app - cli,
                "health seen, alias moved, front switched": m["alias"] - app if "alias" in m else 0.0,
                "smoke test + metadata.yaml": m["done"] - m.get("alias", m["done"])}
    return {"Python start, imports, load model file": m["check"],
            "log model + register version": m["log"] - m["check"],
            "alias set": m["alias"] - m["log"],
            "scoring server: mlflow CLI (import, 2 model downloads)": cli - serve,
            "scoring server: uvicorn app (import, load model)": app - cli,
            "health seen (0.1 s polling)": m["healthy"] - app}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --one, a single round in this fresh interpreter)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-mlflow.md"))
    parser.add_argument("--one", choices=("deploykit", "manual"))
    parser.add_argument("--dir")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    if args.one:
        t0 = time.monotonic() - (time.time() - float(os.environ.get("BENCH_T0", time.time())))
        run = round_deploykit if args.one == "deploykit" else round_manual
        print(json.dumps(run(Path(args.dir), args.tracking_uri, Path(args.model), t0)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="deploykit-bench-"))
    server, uri = _start_tracking_server(work)
    try:
        model = _train(work)
        results: dict[str, list[dict[str, float]]] = {"deploykit": [], "manual": []}
        for i in range(args.rounds):
            for flow in ("manual", "deploykit") if i % 2 else ("deploykit", "manual"):
                folder = work / f"{flow}-{i}"
                folder.mkdir()
                os.environ["BENCH_T0"] = repr(time.time())
                marks = _run_round(flow, folder, uri, model)
                results[flow].append(marks)
                print(f"round {i + 1} {flow}: healthy after {marks['healthy']:.2f} s", file=sys.stderr)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    _write(Path(args.out), results, args.rounds)
    return 0


def _write(out: Path, results: dict[str, list[dict[str, float]]], rounds: int) -> None:
    med = {flow: statistics.median(r["healthy"] for r in runs) for flow, runs in results.items()}
    lines = [
        "# Benchmark: deploy to a healthy MLflow scoring endpoint",
        "",
        "Written by `python benchmarks/mlflow_deploy.py` (see its docstring for the method). "
        f"MLflow {_version('mlflow')}, scikit-learn {_version('scikit-learn')}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores; the seed's bank model (50 trees, 5,000 rows); a local `mlflow server` "
        f"(sqlite, local artifacts). Each round is a fresh interpreter timed from its start; "
        f"medians of {rounds} alternating rounds.",
        "",
        "| flow | deploy call to healthy endpoint (median) | rounds |",
        "|---|---|---|",
    ]
    for flow, label in (("deploykit", "deploykit `deploy --target mlflow` (includes alias move and smoke test)"),
                        ("manual", "manual seed flow (log_model, alias, `mlflow models serve`, poll /health)")):
        each = ", ".join(f"{r['healthy']:.2f}" for r in results[flow])
        lines.append(f"| {label} | {med[flow]:.2f} s | {each} |")
    front = statistics.median(r["p50_front_ms"] for r in results["deploykit"])
    direct = statistics.median(r["p50_direct_ms"] for r in results["deploykit"])
    lines += ["", f"Scoring through deploykit's stable front vs straight to the MLflow scoring server "
                  f"(1-row requests, keep-alive, 200 each, interleaved; p50): **{front:.2f} ms** vs "
                  f"**{direct:.2f} ms**."]
    lines += ["", "## Where the time goes (median seconds per phase)", ""]
    for flow in ("deploykit", "manual"):
        phases = [_phases(flow, r) for r in results[flow]]
        lines += [f"**{flow}**", "", "| phase | seconds |", "|---|---|"]
        for key in phases[0]:
            lines.append(f"| {key} | {statistics.median(p[key] for p in phases):.2f} |")
        lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = out.read_text() if out.exists() else ""
    notes = existing[existing.index("## Reading the numbers"):] if "## Reading the numbers" in existing else ""
    out.write_text("\n".join(lines) + ("\n" + notes if notes else ""))
    print("\n".join(lines))


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
