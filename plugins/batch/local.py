"""The ``local`` batch engine: units scored in this process, or in ``--workers N`` forked processes.

Memory stays bounded whatever the input size: a unit is a few megabytes of input read in
chunks, each chunk checked, scored and appended to the unit's part file before the next is read.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import Any

from deploykit.batch import Job, PartResult, Unit, run_unit
from deploykit.errors import BatchError

__all__ = ["LocalEngine"]

_job: Job | None = None


def _init(job: Job) -> None:
    global _job
    _job = job


def _run(unit: Unit) -> PartResult:
    assert _job is not None
    return run_unit(_job, unit)


class LocalEngine:
    """Scores units here (``workers=1``) or in a pool of ``workers`` processes on this machine."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if address:
            raise BatchError(f"--address {address} names a Dask scheduler; pass --engine dask with it, "
                             "or leave --address out for the local engine")
        self.workers = workers or 1
        #: row-by-row progress is only seen in this process
        self.streams_rows = self.workers == 1
        self.on_rows: Callable[[int], None] | None = None

    def run(self, job: Job, units: list[Unit], on_part: Callable[[PartResult], None]) -> None:
        """Score ``units``; stop at the first failure (its error is raised, other units are cancelled)."""
        if self.workers == 1 or len(units) <= 1:
            self.streams_rows = True
            for unit in units:
                on_part(run_unit(job, unit, self.on_rows))
            return
        # fork: the model loaded here is shared copy-on-write, and nothing re-runs the CLI's __main__
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        context = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=min(self.workers, len(units)), mp_context=context,
                                 initializer=_init, initargs=(job,)) as pool:
            pending: set[Future[PartResult]] = {pool.submit(_run, unit) for unit in units}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        on_part(future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def versions(self) -> dict[str, Any]:
        """The engine and its worker count, for the report."""
        return {"engine": "local", "workers": self.workers}
