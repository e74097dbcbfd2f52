"""Benchmark: what a `deploykit deploy` costs on the command line, side by side with bare Python.

    python benchmarks/deploy_path.py [--repeat 5] [--out docs/benchmarks-deploy.md]

Three commands, each run ``--repeat`` times as a fresh process in one run, so they share the
machine's state (load, disk cache), and reported as medians of wall-clock and CPU time:

* ``python -c pass``: the floor, the interpreter's own start-up.
* no-op deploy: ``deploykit deploy bank-model.joblib --target local`` when that model already
  serves (hash, metadata read, one health check, exit), the step CI re-runs most often.
* first local deploy: the same command in a fresh project folder: start the server process,
  wait until it is healthy, smoke-score the example row, write metadata.yaml. Each run's server
  is stopped (``deploykit delete``) after it is timed.

The model is the example bank-marketing pipeline (examples/train_model.py, 1,500 rows, 15 trees)
with its schema sidecar, as the tests use it. CPU time (user + system of the process and its
children, the server excluded for the first deploy since it outlives the command) is printed
beside wall time because on a shared machine wall time also measures the neighbours.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples")]

#: Goals from the architecture issue (item 10).
NOOP_OVER_BARE = 0.5
FIRST_DEPLOY = 2.5


def _timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _project(base: Path, model: Path, name: str) -> Path:
    folder = base / name
    folder.mkdir()
    for item in model.parent.iterdir():
        shutil.copy(item, folder / item.name)
    (folder / "credentials.yaml").write_text("local:\n  port: 0\n")
    return folder


def _model(base: Path) -> Path:
    import json

    import joblib
    import train_model

    from deploykit.schema import Schema

    folder = base / "model"
    folder.mkdir()
    model, frame = train_model.train(rows=1500, seed=0, n_estimators=15)
    joblib.dump(model, folder / "bank-model.joblib")
    (folder / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return folder / "bank-model.joblib"


def run(repeat: int) -> dict[str, list[tuple[float, float]]]:
    """Time each command ``repeat`` times, interleaved so drifting load hits all three alike."""
    py = sys.executable
    deploy = [py, "-m", "deploykit", "deploy", "bank-model.joblib", "--target", "local", "--json"]
    delete = [py, "-m", "deploykit", "delete", "bank-model", "--json"]
    results: dict[str, list[tuple[float, float]]] = {"bare": [], "noop": [], "first": []}
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-") as tmp:
        base = Path(tmp)
        model = _model(base)
        steady = _project(base, model, "steady")
        _timed(deploy, steady)  # the record the no-op deploys find
        _timed(deploy, steady)  # warm the disk cache and bytecode of the no-op path
        try:
            for i in range(repeat):
                results["bare"].append(_timed([py, "-c", "pass"], base))
                results["noop"].append(_timed(deploy, steady))
                fresh = _project(base, model, f"fresh-{i}")
                try:
                    results["first"].append(_timed(deploy, fresh))
                finally:
                    subprocess.run(delete, cwd=fresh, capture_output=True)
        finally:
            subprocess.run(delete, cwd=steady, capture_output=True)
    return results


def _median(rows: list[tuple[float, float]], which: int) -> float:
    return statistics.median(r[which] for r in rows)


def table(results: dict[str, list[tuple[float, float]]], repeat: int) -> str:
    """The Markdown page: goals, medians, environment."""
    bare, noop, first = (_median(results[k], 0) for k in ("bare", "noop", "first"))
    rows = [("`python -c pass`", "bare", ""),
            ("`deploykit deploy` no-op (same model already serving)", "noop", f"within {NOOP_OVER_BARE} s of bare"),
            ("`deploykit deploy` first local deploy (server healthy, smoke-tested, recorded)", "first",
             f"< {FIRST_DEPLOY} s")]
    lines = [
        "# Benchmark: the deploy path on the command line",
        "",
        "Written by `python benchmarks/deploy_path.py`; the method is in that script's docstring.",
        f"Each command ran {repeat} times as a fresh process, interleaved in one run; seconds, medians.",
        "",
        f"- no-op deploy minus bare Python: **{noop - bare:.3f} s** (goal: within {NOOP_OVER_BARE} s: "
        f"{'met' if noop - bare <= NOOP_OVER_BARE else 'not met'})",
        f"- first local deploy: **{first:.3f} s** (goal: {FIRST_DEPLOY} s: "
        f"{'met' if first <= FIRST_DEPLOY else 'not met'})",
        "",
        "| command | runs | wall median | wall min | wall max | CPU median | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key, goal in rows:
        walls = [r[0] for r in results[key]]
        lines.append(f"| {label} | {len(walls)} | {statistics.median(walls):.3f} | {min(walls):.3f} | "
                     f"{max(walls):.3f} | {_median(results[key], 1):.3f} | {goal} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"Environment: Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
                  f"{os.cpu_count()} CPUs, load average {load:.1f} when the run ended.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-deploy.md")
    args = parser.parse_args()
    page = table(run(args.repeat), args.repeat)
    args.out.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
