"""Async jobs of the local server: a file scored off the request path, its status kept in SQLite.

A job is one uploaded input file (CSV, Parquet or JSON Lines) and what became of it:
``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``. Its row lives in
``jobs.sqlite`` (WAL, so the serving processes of one deployment, and the old and new revision
during an update, share it safely) and its files in one folder per job,
``<state_dir>/jobs/<name>/<id>/``.

- **A plain model** scores the file with deploykit's batch machinery (``deploykit.batch``:
  pyarrow streaming, the schema check of the online server, bounded memory) into
  ``output.<format>`` of the input's format: the input columns, ``prediction`` and one
  ``probability_<class>`` per class. Cancellation is checked after every chunk.
- **An async script bundle** runs ``python -m deploykit.bundle FOLDER JOB_DIR INPUT_NAME`` in a
  child process of its own (process group; the server's interpreter and environment): its
  output is the path it prints, which must be inside the job folder. Cancel kills its group;
  the tail of its stderr is the failure message.

``job_workers`` threads of the process that built the service run jobs (never the event loop,
and at nice 10, so scoring requests stay fast). A job is claimed with one write transaction, so two processes
never run it twice. A job whose runner died (the server was killed) is marked failed with the
reason "the server stopped while the job ran" by the next server that opens the store; queued
jobs simply run. Finished jobs are kept ``job_retention_s`` seconds, then their files are
removed and the row stays as a tombstone, so a client is told 410 Gone with the expiry time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploykit.artifact import Artifact

__all__ = ["FORMATS", "MEDIA_TYPES", "STATUSES", "JobService", "JobStore", "Submission", "format_of_name"]

log = logging.getLogger("deploykit.server")

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
#: Request media types of a raw job body, and the input format each means.
MEDIA_TYPES = {"text/csv": "csv", "application/csv": "csv",
               "application/x-parquet": "parquet", "application/vnd.apache.parquet": "parquet",
               "application/parquet": "parquet",
               "application/x-ndjson": "jsonl", "application/jsonlines": "jsonl", "application/x-jsonlines": "jsonl",
               "application/jsonl": "jsonl"}
#: Input formats: file suffix and the media type of a result in that format.
FORMATS = {"csv": (".csv", "text/csv"), "parquet": (".parquet", "application/vnd.apache.parquet"),
           "jsonl": (".jsonl", "application/x-ndjson")}
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
STOPPED = "the server stopped while the job ran"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STDERR_LINES = 20
#: The niceness of job threads (and so of script children): below the serving thread's.
JOB_NICE = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    expired INTEGER NOT NULL DEFAULT 0,
    input_name TEXT NOT NULL,
    input_format TEXT,
    input_bytes INTEGER NOT NULL,
    input_sha256 TEXT NOT NULL,
    rows_in INTEGER,
    rows_out INTEGER,
    output_name TEXT,
    error TEXT,
    webhook TEXT,
    owner TEXT,
    child_pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    revision INTEGER,
    model_sha256 TEXT
)
"""


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")


def format_of_name(name: str) -> str | None:
    """The input format a file name's suffix says (``.csv``, ``.parquet``, ``.jsonl``...), or None."""
    return _SUFFIXES.get(Path(name).suffix.lower())


def check_id(job_id: str) -> str | None:
    """Why ``job_id`` cannot name a job (None when it can)."""
    if _ID.match(job_id):
        return None
    return (f"job id {job_id[:80]!r} is not allowed; use 1 to 128 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit")


class JobStore:
    """The jobs of one deployment: ``jobs.sqlite`` (WAL) and a folder per job under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "jobs.sqlite"
        self._local = threading.local()
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (autocommit; ``transaction`` for a write that reads first)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        yield db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: writers of every process take turns)."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def folder(self, job_id: str) -> Path:
        """The job's own folder (input and output files)."""
        return self.root / job_id

    def log_file(self, job_id: str, stream: str) -> Path:
        """Where a script job's stdout or stderr goes (beside the job folder, not in it)."""
        return self.root / f".{job_id}.{stream}"

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's row, or None."""
        with self.connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row) if row is not None else None

    def list(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs, newest first."""
        with self.connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def update(self, job_id: str, **values: Any) -> None:
        """Set columns of one job."""
        names = ", ".join(f"{k} = ?" for k in values)
        with self.connect() as db:
            db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*values.values(), job_id))

    def counts(self) -> dict[str, int]:
        """Jobs by status (tombstones of expired jobs left out)."""
        with self.connect() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM jobs WHERE expired = 0 GROUP BY status").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def remove(self, job_id: str) -> None:
        """Forget a job: its row and its files."""
        with self.connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        self.remove_files(job_id)

    def remove_files(self, job_id: str) -> None:
        """Remove the job's folder and logs."""
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
        for stream in ("stdout", "stderr"):
            self.log_file(job_id, stream).unlink(missing_ok=True)


@dataclass
class Submission:
    """An uploaded input, staged in the store's root until it becomes a job."""

    staged: Path
    name: str
    format: str | None
    size: int
    sha256: str
    webhook: str | None = None


class _Cancelled(Exception):
    """Raised between chunks when the job was cancelled."""


class _Execution:
    """A job being run by this process: its cancel flag and, for a script, its child process."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.cancel = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        self.cancel.set()
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


#: Plain-model jobs of one process score one at a time: deploykit.batch keeps one scorer per model
#: (sha256) per process, and its last call's class positions are read after each call.
_MODEL_LOCK = threading.Lock()


class JobService:
    """The jobs of one served artifact: submit, status, cancel, and the worker threads that run them."""

    def __init__(self, artifact: Artifact, root: Path, *, workers: int = 1, retention_s: float = 86400.0,
                 webhook: str | None = None, revision: int = 1,
                 on_finished: Callable[[str], None] | None = None) -> None:
        self.artifact = artifact
        self.store = JobStore(root)
        self.workers = max(1, workers)
        self.retention_s = retention_s
        self.webhook = webhook
        self.revision = revision
        self.on_finished = on_finished
        bundle_mode = artifact.extra.get("mode") if artifact.flavor == "script" else None
        self.kind = "script" if bundle_mode == "async" else "model"
        #: why this artifact takes no jobs (a sync script scores requests, not files)
        self.refusal = ("this deployment is a sync scoring script: it scores requests (POST /predict), not files; "
                        "deploy it with mode async to run jobs") if bundle_mode == "sync" else None
        from deploykit.operations import Owner

        self.owner = Owner.current()
        self._running: dict[str, _Execution] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._recover()

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads (and stop them with the process: running jobs are then failed)."""
        if self._threads:
            return
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, args=(i == 0,), daemon=True, name=f"deploykit-job-{i}")
            thread.start()
            self._threads.append(thread)
        me = weakref.ref(self)

        def forked() -> None:  # a forked serving process runs no jobs: its parent's threads do
            service = me()
            if service is not None:
                service._threads = []
                service._running = {}
                service._stop.set()

        def leaving() -> None:
            service = me()
            if service is not None and os.getpid() == service.owner.pid:
                service.close()

        os.register_at_fork(after_in_child=forked)
        import atexit

        atexit.register(leaving)

    def close(self) -> None:
        """Stop the workers; jobs this process was running are killed and marked failed."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for execution in running:
            execution.kill()
            self._finish(execution.job_id, "failed", error=STOPPED)

    def wake(self) -> None:
        """A job was queued: a worker of this process picks it up now (others poll the store)."""
        self._wake.set()

    def _recover(self) -> None:
        """Mark failed the running jobs whose server is gone (killing a script child it left)."""
        from deploykit.operations import Owner

        now = time.time()
        with self.store.transaction() as db:
            rows = db.execute("SELECT id, owner, child_pid FROM jobs WHERE status = 'running'").fetchall()
            for row in rows:
                try:
                    data = json.loads(row["owner"] or "{}")
                    owner = Owner(int(data["pid"]), str(data["host"]), data.get("boot_id"), data.get("started"))
                    gone = owner.state() == "dead"
                except (ValueError, KeyError, TypeError):
                    gone = True
                if not gone:
                    continue
                self._kill_orphan(row["id"], row["child_pid"])
                db.execute("UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, expires_at = ?, "
                           "child_pid = NULL WHERE id = ?", (STOPPED, now, now + self.retention_s, row["id"]))
                log.warning("deploykit server: job %s failed: %s", row["id"], STOPPED)

    def _kill_orphan(self, job_id: str, pid: int | None) -> None:
        """A script child of a dead server still runs: kill its group (only if it is that job's)."""
        from deploykit.process import cmdline

        if not pid:
            return
        cmd = cmdline(int(pid)) or b""
        if b"deploykit.bundle" in cmd and str(self.store.folder(job_id)).encode() in cmd:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)

    # -- submit, read, cancel --------------------------------------------------------------
    def submit(self, submission: Submission, job_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Queue ``submission`` as job ``job_id`` (a new id when None); ``(row, created)``.

        With an id that exists, the same input (sha256 and format) returns the existing job
        (``created`` False: a retried PUT never runs twice); another input is a ValueError."""
        job_id = job_id or uuid.uuid4().hex
        name = submission.name
        if self.kind == "model":
            name = "input" + FORMATS[submission.format or "csv"][0]
        now = time.time()
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                submission.staged.unlink(missing_ok=True)
                if row["input_sha256"] != submission.sha256 or row["input_format"] != submission.format:
                    raise ValueError(f"job {job_id!r} already exists with another input (sha256 "
                                     f"{row['input_sha256'][:12]}, {row['input_bytes']} bytes; this one is "
                                     f"{submission.sha256[:12]}, {submission.size} bytes); submit it under another "
                                     "id, or without one")
                return dict(row), False
            folder = self.store.folder(job_id)
            if folder.exists():  # left by a server killed between staging and recording a job
                shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            os.replace(submission.staged, folder / name)
            db.execute("INSERT INTO jobs (id, status, kind, created_at, input_name, input_format, input_bytes, "
                       "input_sha256, webhook) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, self.kind, now, name, submission.format, submission.size, submission.sha256,
                        submission.webhook))
            created = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        self.wake()
        return dict(created), True

    def expired(self, row: dict[str, Any]) -> bool:
        """True once a finished job is past its retention."""
        return bool(row["expired"]) or (row["expires_at"] is not None and row["expires_at"] <= time.time())

    def cancel(self, job_id: str, wait: float = 5.0) -> dict[str, Any] | None:
        """Cancel a queued or running job; the row after it (None if unknown). A running job is
        stopped by the process that runs it, within ``wait`` seconds here when that is this one."""
        now = time.time()
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] == "queued":
                db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, expires_at = ?, "
                           "error = 'cancelled before it ran' WHERE id = ?", (now, now + self.retention_s, job_id))
                self._count("cancelled")
            elif row["status"] == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        with self._lock:
            execution = self._running.get(job_id)
        if execution is not None:
            execution.kill()
        deadline = time.monotonic() + wait
        while True:
            current = self.store.get(job_id)
            if current is None or current["status"] != "running" or time.monotonic() >= deadline:
                return current
            time.sleep(0.05)

    def document(self, row: dict[str, Any]) -> dict[str, Any]:
        """The job as clients see it (``GET /jobs/{id}``)."""
        finished = row["status"] in FINISHED
        return {"id": row["id"], "status": row["status"], "kind": row["kind"],
                "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
                "finished_at": _iso(row["finished_at"]), "expires_at": _iso(row["expires_at"]),
                "input": {"name": row["input_name"], "format": row["input_format"], "bytes": row["input_bytes"]},
                "rows_in": row["rows_in"], "rows_out": row["rows_out"], "output": row["output_name"],
                "error": row["error"], "cancel_requested": bool(row["cancel_requested"]),
                "revision": row["revision"], "model_sha256": row["model_sha256"],
                "webhook": bool(row["webhook"] or self.webhook),
                "result": f"/jobs/{row['id']}/result" if finished and row["status"] == "succeeded" else None}

    # -- running ---------------------------------------------------------------------------
    def _count(self, status: str) -> None:
        if self.on_finished is not None:
            with contextlib.suppress(Exception):
                self.on_finished(status)

    def _claim(self) -> dict[str, Any] | None:
        owner = json.dumps(self.owner.to_dict())
        with self.store.transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', started_at = ?, owner = ?, revision = ?, "
                       "model_sha256 = ? WHERE id = ?",
                       (time.time(), owner, self.revision, self.artifact.sha256, row["id"]))
            claimed = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return dict(claimed)

    def _work(self, reaps: bool) -> None:
        # a lower CPU priority for this thread (Linux schedules threads as tasks; a script's child
        # process inherits it): when a core is contended, the serving thread wins it
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICE)
        next_reap = 0.0
        while not self._stop.is_set():
            try:
                if reaps and time.monotonic() >= next_reap:
                    self._reap()
                    next_reap = time.monotonic() + min(max(self.retention_s / 4, 0.05), 30.0)
                job = self._claim()
            except sqlite3.Error as exc:  # a busy or broken store: say so, try again
                log.warning("deploykit server: the job store %s failed (%s); retrying", self.store.path, exc)
                job = None
            if job is None:
                self._wake.wait(min(0.5, max(self.retention_s / 4, 0.05)) if reaps else 0.5)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: dict[str, Any]) -> None:
        execution = _Execution(job["id"])
        with self._lock:
            self._running[job["id"]] = execution
        try:
            if self.refusal is not None:
                raise _Failure(self.refusal)
            if self.kind == "script":
                rows_in, rows_out, output = self._run_script(job, execution)
            else:
                rows_in, rows_out, output = self._run_model(job, execution)
            self._finish(job["id"], "succeeded", rows_in=rows_in, rows_out=rows_out, output_name=output)
        except _Cancelled:
            self._finish(job["id"], "cancelled", error="cancelled while it ran")
        except _Failure as exc:
            self._finish(job["id"], "failed", error=str(exc))
        except Exception as exc:
            from deploykit.errors import DeployKitError

            if execution.cancel.is_set():
                self._finish(job["id"], "cancelled", error="cancelled while it ran")
            elif isinstance(exc, DeployKitError):
                self._finish(job["id"], "failed", error=str(exc))
            else:
                log.exception("deploykit server: job %s failed", job["id"])
                self._finish(job["id"], "failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job["id"], None)

    def _finish(self, job_id: str, status: str, **values: Any) -> None:
        """Settle a running job (a job already settled or removed is left as it is)."""
        now = time.time()
        with self.store.transaction() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] != "running":
                return  # removed, or already settled (close() raced a worker)
            values.update(status=status, finished_at=now, expires_at=now + self.retention_s, child_pid=None)
            names = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*values.values(), job_id))
        if status == "failed":
            log.warning("deploykit server: job %s failed: %s", job_id, values.get("error"))
        self._count(status)
        final = self.store.get(job_id)
        if final is not None:
            self._notify(final)

    def _notify(self, row: dict[str, Any]) -> None:
        """POST the job document to its webhook (the submit's, else ``local.job_webhook``); a
        failure to deliver is logged, never the job's failure."""
        url = row["webhook"] or self.webhook
        if not url:
            return
        from deploykit.http import redact_url, request_json

        try:
            status, _ = request_json("POST", url, self.document(row), timeout=10, retries=2)
        except Exception as exc:
            log.warning("deploykit server: the webhook %s for job %s was not delivered (%s)",
                        redact_url(url), row["id"], exc)
            return
        if status >= 400:
            log.warning("deploykit server: the webhook %s for job %s answered %s", redact_url(url), row["id"], status)

    def _check(self, job_id: str, execution: _Execution) -> None:
        if execution.cancel.is_set():
            raise _Cancelled
        row = self.store.get(job_id)
        if row is None or row["cancel_requested"]:  # DELETE answered by another serving process
            execution.cancel.set()
            raise _Cancelled

    def _run_model(self, job: dict[str, Any], execution: _Execution) -> tuple[int, int, str]:
        """Score the input with deploykit's batch machinery; output in the input's format."""
        from deploykit.batch import batch
        from deploykit.errors import BatchError, SchemaError

        folder = self.store.folder(job["id"])
        source = folder / job["input_name"]
        parts = folder / ".parts"
        fmt = job["input_format"] or "csv"
        done = [0]

        def between_chunks(rows: int) -> None:
            done[0] += rows
            self.store.update(job["id"], rows_in=done[0])
            self._check(job["id"], execution)

        self._check(job["id"], execution)
        with _MODEL_LOCK:
            self._check(job["id"], execution)
            try:
                report = batch(self.artifact, str(source), str(parts), output_format="parquet", overwrite=True,
                               on_rows=between_chunks, batch_rows=16_384, chunk_size=1 << 20)
            except (BatchError, SchemaError) as exc:
                message = str(exc).replace(str(source), job["input_name"])
                raise _Failure(re.sub(r"; fix those rows, or pass --on-error .*$", "; fix those rows and submit the "
                                      "file again", message)) from None
        self._check(job["id"], execution)
        output = "output" + FORMATS[fmt][0]
        _merge(parts, sorted(report.parts), folder / output, fmt)
        shutil.rmtree(parts, ignore_errors=True)
        return report.rows_in, report.rows_out, output

    def _run_script(self, job: dict[str, Any], execution: _Execution) -> tuple[int | None, int | None, str]:
        """One execution of the async script in a child process of its own group."""
        folder = self.store.folder(job["id"])
        cmd = [sys.executable, "-m", "deploykit.bundle", str(self.artifact.path), str(folder), job["input_name"]]
        out_log, err_log = self.store.log_file(job["id"], "stdout"), self.store.log_file(job["id"], "stderr")
        with out_log.open("wb") as out, err_log.open("wb") as err:
            execution.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                                 cwd=folder, start_new_session=True, close_fds=True)
        self.store.update(job["id"], child_pid=execution.process.pid)
        while True:
            try:
                code = execution.process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                try:
                    self._check(job["id"], execution)
                except _Cancelled:
                    execution.kill()
                    execution.process.wait()
                    raise
        if execution.cancel.is_set():
            raise _Cancelled
        if code != 0:
            tail = _tail(err_log) or f"(no output on stderr; exit status {code})"
            raise _Failure(f"the async script failed (exit status {code}): {tail}")
        printed = [line for line in out_log.read_text(errors="replace").splitlines() if line.strip()]
        if not printed:
            raise _Failure("the async script printed no output path; return the output file's full path from score()")
        path = Path(printed[-1].strip())
        resolved = path.resolve()
        if not resolved.is_relative_to(folder.resolve()):
            raise _Failure(f"the async script returned {str(path)!r}, which is outside its job folder "
                           f"{str(folder)!r}; write the output file into data_path and return its path")
        if not resolved.is_file():
            raise _Failure(f"the async script returned {str(path)!r}, which is not a file; return the path of the "
                           "output file it wrote")
        output = str(resolved.relative_to(folder.resolve()))
        return _count_rows(folder / job["input_name"]), _count_rows(resolved), output

    def _reap(self) -> None:
        """Remove the files of jobs past their retention; their rows stay as tombstones (410)."""
        now = time.time()
        with self.store.connect() as db:
            rows = db.execute("SELECT id FROM jobs WHERE expired = 0 AND expires_at IS NOT NULL AND expires_at <= ?",
                              (now,)).fetchall()
        for row in rows:
            self.store.remove_files(row["id"])
            self.store.update(row["id"], expired=1)


class _Failure(Exception):
    """The job failed for a reason its message names."""


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return "\n".join(lines[-_STDERR_LINES:])[-4000:]


def _count_rows(path: Path) -> int | None:
    """Data rows of a CSV, Parquet or JSON Lines file (None for another kind of file)."""
    fmt = format_of_name(path.name)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt in ("csv", "jsonl"):
            with path.open("rb") as fh:
                lines = sum(1 for line in fh if line.strip())
            return max(0, lines - 1) if fmt == "csv" else lines
    except Exception:  # a count is a courtesy: an odd file still is the job's output
        return None
    return None


def _merge(parts: Path, names: list[str], output: Path, fmt: str) -> None:
    """Join the batch run's Parquet parts into one output file of format ``fmt``, batch by batch."""
    import pyarrow.parquet as pq

    tmp = output.with_name(f".{output.name}.tmp")
    files = [pq.ParquetFile(parts / name) for name in names]
    schema = files[0].schema_arrow if files else None
    with tmp.open("wb") as sink:
        writer: Any = None
        if fmt == "csv" and schema is not None:
            import pyarrow.csv as pcsv

            writer = pcsv.CSVWriter(sink, schema)
        elif fmt == "parquet" and schema is not None:
            writer = pq.ParquetWriter(sink, schema, compression="snappy")
        for pf in files:
            for batch in pf.iter_batches(batch_size=65_536):
                if fmt == "jsonl":
                    import orjson

                    sink.write(b"".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                                        for row in batch.to_pylist()))
                else:
                    writer.write_batch(batch)
        if writer is not None:
            writer.close()
    os.replace(tmp, output)
