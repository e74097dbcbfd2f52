"""Logged inputs: each scored row's features, its prediction, the request id, time and model
revision, appended to size-capped Parquet files off the request path.

Opt-in (``local.log_inputs: true``). The request only puts its rows on an in-memory queue; a
writer thread flushes them about once a second to a new file
``inputs-<UTC time>-<pid>-<n>.parquet`` (written to a temporary name, then renamed, so a
reader never sees half a file) in ``.deploykit/input-logs/<name>/``, and removes the oldest files
while the folder is over ``log_inputs_max_bytes``. A failed write (full disk, folder not
writable) is counted in ``deploykit_input_log_failures_total`` and logged once a minute; the
request was answered already. At a clean shutdown the queue is flushed; after ``kill -9``
at most the last unflushed second is lost. Logged rows may hold personal data: see
docs/monitoring.md before turning this on.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploykit.payload import Predictions
    from deploykit_plugins.local.metrics import Metrics

__all__ = ["META_COLUMNS", "InputLog"]

log = logging.getLogger("deploykit.server")

#: Columns added to the features in every logged row.
META_COLUMNS = ("__time", "__request_id", "__revision", "__prediction")
_FLUSH_S = 1.0
_MAX_QUEUED_ROWS = 200_000


class InputLog:
    """The writer of one server process's logged inputs (its thread starts on first use, in
    every process: a thread does not survive ``fork``)."""

    def __init__(self, folder: Path, revision: int, max_bytes: int, metrics: Metrics | None = None) -> None:
        self.folder = folder
        self.revision = revision
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._queue: queue.SimpleQueue[tuple[float, str, dict[str, Any], int, list[Any]] | None] = \
            queue.SimpleQueue()
        self._queued = 0
        self._pid = -1
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._last_warning = 0.0
        self.written = 0
        self.failures = 0

    def record(self, columns: dict[str, Any], rows: int, preds: Predictions) -> None:
        """Queue one request's rows (never blocks, never raises)."""
        if self._pid != os.getpid():
            self._start()
        if self._queued + rows > _MAX_QUEUED_ROWS:
            if self.metrics is not None:
                self.metrics.log_dropped.inc(rows)
            return
        self._queued += rows
        self._queue.put((time.time(), uuid.uuid4().hex, columns, rows, list(preds.labels)))

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue = queue.SimpleQueue()
        self._queued = 0
        self._thread = threading.Thread(target=self._run, name="deploykit-input-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def close(self) -> None:
        """Flush what is queued and stop the writer (idempotent)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._thread = None
        self._queue.put(None)
        thread.join(30)

    def _run(self) -> None:
        pending: list[tuple[float, str, dict[str, Any], int, list[Any]]] = []
        deadline = time.monotonic() + _FLUSH_S
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pass
            else:
                if item is None:
                    self._flush(pending)
                    return
                pending.append(item)
            if time.monotonic() >= deadline:
                self._flush(pending)
                pending = []
                deadline = time.monotonic() + _FLUSH_S

    def _flush(self, pending: list[tuple[float, str, dict[str, Any], int, list[Any]]]) -> None:
        if not pending:
            return
        rows = sum(p[3] for p in pending)
        self._queued = max(0, self._queued - rows)
        try:
            self._write(pending)
        except Exception as exc:  # a full disk or a read-only folder must not reach a request
            self.failures += 1
            if self.metrics is not None:
                self.metrics.log_failures.inc()
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("deploykit server: %d logged input rows could not be written to %s (%s: %s); "
                            "the requests were answered; free disk space or fix the folder's permissions",
                            rows, self.folder, type(exc).__name__, exc)
            return
        self.written += rows
        if self.metrics is not None:
            self.metrics.log_rows.inc(rows)

    def _write(self, pending: list[tuple[float, str, dict[str, Any], int, list[Any]]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table: dict[str, list[Any]] = {name: [] for name in META_COLUMNS}
        features: list[str] = []
        for _, _, columns, _, _ in pending:
            for name in columns:
                if name not in table:
                    table[name] = []
                    features.append(name)
        for at, request_id, columns, rows, labels in pending:
            stamp = datetime.fromtimestamp(at, UTC)
            table["__time"].extend([stamp] * rows)
            table["__request_id"].extend([request_id] * rows)
            table["__revision"].extend([self.revision] * rows)
            table["__prediction"].extend(str(v) for v in labels)
            for name in features:
                values = columns.get(name)
                table[name].extend([None] * rows if values is None else _plain(values))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stem = f"inputs-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}-{self._seq:06d}"
        temporary = self.folder / f".{stem}.tmp"
        pq.write_table(pa.table(table), temporary)
        os.replace(temporary, self.folder / f"{stem}.parquet")
        self._cap()

    def _cap(self) -> None:
        """Remove the oldest files while the folder is over ``max_bytes`` (the newest one stays)."""
        files = sorted(self.folder.glob("inputs-*.parquet"))
        sizes = [f.stat().st_size for f in files]
        total = sum(sizes)
        for file, size in zip(files[:-1], sizes[:-1]):
            if total <= self.max_bytes:
                break
            file.unlink(missing_ok=True)
            total -= size


def _plain(values: Any) -> list[Any]:
    """A column's values as plain Python (numpy scalars and NaN-as-float kept as pyarrow reads them)."""
    tolist = getattr(values, "tolist", None)
    return list(tolist()) if tolist is not None else list(values)
