"""The ``dask`` batch engine: the same units, scored on a Dask cluster.

No address: a ``LocalCluster`` on this machine (one single-threaded worker process per core,
or ``--workers N``). ``--address tcp://HOST:8786`` or ``DASK_SCHEDULER_ADDRESS``: an existing
cluster; a scheduler that does not answer within ``DEPLOYKIT_DASK_CONNECT_TIMEOUT`` seconds
(default 10) is a BatchError, not a hang.

The input is a ``dask.dataframe`` built with ``from_map``: one partition per unit, with an
explicit ``meta`` (the output schema computed from the first rows, never inferred by running
a task). Each partition is read, checked, scored and written as its part file on the worker
(a temporary name, renamed when complete), exactly as the local engine does, so both engines
write identical parts and a resumed run works the same. ``to_parquet`` is not used because it
writes parts under their final names as it goes: a killed run would leave half-written parts
that look complete.

The model file's bytes are shipped once to every worker (a worker plugin, which also reaches
workers that join later); each worker checks their sha256 before loading them. Before
scoring, every worker's python (major.minor), numpy and scikit-learn versions are compared
with the model's: a mismatch is refused, naming the worker and both versions.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from deploykit.batch import Job, PartResult, Unit, register_model, run_unit
from deploykit.errors import BatchError

__all__ = ["DaskEngine", "worker_versions"]

_CONNECT_TIMEOUT = "DEPLOYKIT_DASK_CONNECT_TIMEOUT"


def worker_versions() -> dict[str, str | None]:
    """This process's python (major.minor), numpy and scikit-learn versions."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": f"{sys.version_info[0]}.{sys.version_info[1]}"}
    for dist in ("numpy", "scikit-learn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


class _ModelPlugin(WorkerPlugin):
    """A worker plugin carrying the model: loaded once on each worker, before its first task."""

    def __init__(self, job: Job, payload: bytes, kind: str) -> None:
        self.name = f"deploykit-model-{job.sha256[:16]}"
        self.job = job
        self.payload = payload
        self.kind = kind

    def setup(self, worker: Any) -> None:
        if self.kind == "file":
            digest = hashlib.sha256(self.payload).hexdigest()
            if digest != self.job.sha256:
                raise BatchError(f"the model reached worker {worker.address} with sha256 {digest[:12]}, "
                                 f"not {self.job.sha256[:12]}; run again")
            import joblib

            model = joblib.load(io.BytesIO(self.payload))
        else:
            model = pickle.loads(self.payload)
        register_model(self.job, model)


def _score_partition(unit: Unit, job: Job) -> Any:
    """One partition: the unit read, scored and written; its row counts as a one-row frame."""
    import pandas as pd

    result = run_unit(job, unit)
    return pd.DataFrame({"unit": [result.unit], "part": [result.part], "rows_in": [result.rows_in],
                         "rows_out": [result.rows_out], "rows_rejected": [result.rows_rejected],
                         "bytes": [result.bytes], "problems": [json.dumps(result.problems, default=str)]})


def _meta() -> Any:
    import pandas as pd

    return pd.DataFrame({"unit": pd.Series([], dtype="int64"), "part": pd.Series([], dtype=object),
                         "rows_in": pd.Series([], dtype="int64"), "rows_out": pd.Series([], dtype="int64"),
                         "rows_rejected": pd.Series([], dtype="int64"), "bytes": pd.Series([], dtype="int64"),
                         "problems": pd.Series([], dtype=object)})


async def _identity(address: str, timeout: float) -> str:
    """What answers at ``address``: ``Scheduler`` for a Dask scheduler."""
    from distributed.comm.core import connect

    comm = await connect(address, timeout=timeout)  # type: ignore[no-untyped-call]
    try:
        await comm.write({"op": "identity", "reply": True})
        reply = await comm.read()
    finally:
        comm.abort()
    return str(reply.get("type")) if isinstance(reply, dict) else repr(reply)


class DaskEngine:
    """Scores units as the partitions of a dask.dataframe on a Dask cluster."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
        self.workers = workers
        self._versions: dict[str, Any] = {}

    def _client(self) -> tuple[Any, Any]:
        from distributed import Client, LocalCluster

        if self.address is None:
            n = self.workers or os.cpu_count() or 1
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR)
            return Client(cluster), cluster  # type: ignore[no-untyped-call]
        timeout = float(os.environ.get(_CONNECT_TIMEOUT, "10"))
        try:
            # Client() alone can wait forever on a port that accepts but never speaks
            kind = asyncio.run(asyncio.wait_for(_identity(self.address, timeout), timeout))
            if kind != "Scheduler":
                raise BatchError(f"{self.address} answered as a Dask {kind}, not a scheduler; pass the "
                                 "scheduler's address (tcp://HOST:8786)")
            return Client(self.address, timeout=timeout), None  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise BatchError(f"the Dask scheduler at {self.address} did not answer within {timeout:.0f} s "
                             f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); start it ('dask "
                             "scheduler'), check the address and port, or leave --address out to use a "
                             "LocalCluster on this machine") from None

    def _check_versions(self, client: Any, job: Job, expected: dict[str, str | None]) -> None:
        reported = client.run(worker_versions)
        if not reported:
            raise BatchError(f"the Dask cluster at {self.address or 'LocalCluster'} has no workers; start some "
                             "('dask worker SCHEDULER_ADDRESS') and run again")
        problems = []
        for worker, versions in sorted(reported.items()):
            for key, want in expected.items():
                have = versions.get(key)
                if want is not None and have != want:
                    problems.append(f"worker {worker} has {key} {have}, the model needs {want}")
        if problems:
            raise BatchError("the Dask workers cannot score this model as it was fitted: " + "; ".join(problems)
                             + ". Install the same versions on the workers (or refit the model) and run again")
        self._versions = {"workers": len(reported), "worker_versions": next(iter(reported.values()))}

    def run(self, job: Job, units: list[Unit], on_part: Callable[[PartResult], None]) -> None:
        """Ship the model, check the workers' versions, then score every unit as a partition."""
        from importlib.metadata import version

        import dask.dataframe as dd
        import distributed

        if job.score is not None:
            raise BatchError("a target's own batch jobs run from this process; use --engine local with --target")
        client, cluster = self._client()
        try:
            expected = worker_versions()
            if job.framework == "scikit-learn":
                expected["scikit-learn"] = job.framework_version
            self._check_versions(client, job, expected)
            path = Path(job.source)
            if path.is_file():
                plugin = _ModelPlugin(job, path.read_bytes(), "file")
            else:
                from deploykit.artifact import load_artifact

                plugin = _ModelPlugin(job, pickle.dumps(load_artifact(job.source, job.schema).model), "pickle")
            client.register_plugin(plugin)
            self._versions.update(engine="dask", dask=version("dask"), distributed=version("distributed"),
                                  scheduler=client.scheduler.address)
            if not units:
                return
            frame = dd.from_map(  # type: ignore[no-untyped-call]
                _score_partition, units, job=job, meta=_meta(), enforce_metadata=False,
                label="deploykit-batch")
            futures = client.compute(frame.to_delayed())
            for future in distributed.as_completed(futures):  # type: ignore[no-untyped-call]
                stats = future.result()
                for row in stats.to_dict("records"):
                    on_part(PartResult(int(row["unit"]), row["part"], int(row["rows_in"]), int(row["rows_out"]),
                                       int(row["rows_rejected"]), int(row["bytes"]), json.loads(row["problems"])))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def versions(self) -> dict[str, Any]:
        """The engine, dask versions, the scheduler and what the workers reported."""
        return self._versions
