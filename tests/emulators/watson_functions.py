"""The Watson emulator's runtime for deployed Python functions: package extensions installed into
folders, and one worker process per deployed function revision.

As the service does, a deployment of a function builds its software specification first (each
``pip_zip`` package extension, a source distribution, is installed with ``pip install --target``
into a folder of its own, once per extension) and then loads the function's code once, in its
own process (``watson_function_worker.py``) with those folders on its ``PYTHONPATH``; every
scoring request is then one call of ``score(payload)`` in that process. User code never runs in
the emulator's (the test's) process.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("watson_function_worker.py")
#: How long a load (install + import) or one scoring call may take before the process is killed.
LOAD_TIMEOUT = 300.0
SCORE_TIMEOUT = 120.0

Key = tuple[str, str, str]  # (deployment id, function id, revision)


class FunctionError(Exception):
    """The function failed to load or to score: ``message`` is ``Type: text`` from its process."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.message, self.traceback = message, traceback


@dataclass
class Worker:
    """One loaded function in its own process."""

    process: subprocess.Popen[bytes]
    folder: Path
    lines: queue.Queue[bytes | None] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=read, name="watson-function-reader", daemon=True).start()

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise FunctionError(f"TimeoutError: the function did not answer within {timeout:.0f} s") from None
        if line is None:
            self.process.wait(5)
            raise FunctionError(f"RuntimeError: the function's process exited with code {self.process.returncode}"
                                f"{self.log_tail()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def log_tail(self) -> str:
        try:
            tail = (self.folder / "stderr.log").read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            return ""
        return (": " + " | ".join(tail)) if tail else ""

    def call(self, payload: Any) -> Any:
        with self.lock:
            if self.process.poll() is not None:
                raise FunctionError(f"RuntimeError: the function's process exited with code {self.process.returncode}")
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(payload).encode() + b"\n")
            self.process.stdin.flush()
            reply = self.answer(SCORE_TIMEOUT)
        if not reply.get("ok"):
            raise FunctionError(str(reply.get("error")), str(reply.get("traceback") or ""))
        return reply.get("result")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Loading:
    """A function being loaded for a deployment in the background: ``done`` is set with ``error`` or a worker."""

    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


class FunctionRuntime:
    """Installs package extensions (cached per extension id) and runs functions in worker processes."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="watson-functions-"))
        self._lock = threading.Lock()
        self._installed: dict[str, Path] = {}
        self._install_locks: dict[str, threading.Lock] = {}
        self._workers: dict[Key, Worker] = {}
        self._gone: set[str] = set()

    # -- package extensions ------------------------------------------------------------
    def install(self, extension_id: str, filename: str, content: bytes) -> Path:
        """The folder ``content`` (a pip zip: a source distribution) is installed into, installing it once."""
        with self._lock:
            lock = self._install_locks.setdefault(extension_id, threading.Lock())
        with lock:
            if extension_id in self._installed:
                return self._installed[extension_id]
            work = self.root / f"ext-{extension_id}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            archive = work / (Path(filename).name or "extension.zip")
            archive.write_bytes(content)
            target = work / "site"
            result = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                 "--disable-pip-version-check", "--target", str(target), str(archive)],
                capture_output=True, text=True, timeout=LOAD_TIMEOUT, cwd=work)
            if result.returncode != 0:
                text = (result.stderr or result.stdout).strip().splitlines()
                raise FunctionError("PackageExtensionError: installing the package extension "
                                    f"{Path(filename).name!r} failed: {' | '.join(text[-6:])}")
            self._installed[extension_id] = target
            return target

    def forget_extension(self, extension_id: str) -> None:
        with self._lock:
            folder = self._installed.pop(extension_id, None)
        if folder is not None:
            shutil.rmtree(folder.parent, ignore_errors=True)

    # -- functions ---------------------------------------------------------------------
    def load(self, key: Key, code: bytes, extensions: list[tuple[str, str, bytes]]) -> Loading:
        """Start loading function ``code`` for ``key`` in the background (install, then import once)."""
        loading = Loading()
        with self._lock:
            self._gone.discard(key[0])

        def run() -> None:
            try:
                paths = [self.install(ext_id, name, content) for ext_id, name, content in extensions]
                worker = self._start(code, paths)
                with self._lock:
                    if key[0] in self._gone:
                        worker.stop()
                        return
                    old = self._workers.pop(key, None)
                    self._workers[key] = worker
                if old is not None:
                    old.stop()
            except FunctionError as exc:
                loading.error = exc.message
            except Exception as exc:
                log.exception("loading function %s failed", key)
                loading.error = f"{type(exc).__name__}: {exc}"
            finally:
                loading.done.set()

        threading.Thread(target=run, name=f"watson-function-load-{key[0][:8]}", daemon=True).start()
        return loading

    def _start(self, code: bytes, paths: list[Path]) -> Worker:
        folder = Path(tempfile.mkdtemp(prefix="fn-", dir=self.root))
        (folder / "function.py.gz").write_bytes(code)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        with (folder / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen([sys.executable, str(WORKER), str(folder / "function.py.gz")],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                       cwd=folder, env=env)
        worker = Worker(process, folder)
        worker.start_reader()
        try:
            reply = worker.answer(LOAD_TIMEOUT)
        except FunctionError:
            worker.stop()
            raise
        if not reply.get("ok"):
            log.warning("deployed function failed to load: %s", reply.get("traceback"))
            worker.stop()
            raise FunctionError(str(reply.get("error")), str(reply.get("traceback") or ""))
        return worker

    def score(self, key: Key, payload: Any) -> Any:
        """``score(payload)`` of the function loaded for ``key``; FunctionError when it raises."""
        with self._lock:
            worker = self._workers.get(key)
        if worker is None:
            raise FunctionError(f"RuntimeError: function {key[1]} revision {key[2] or 'latest'} is not loaded "
                                f"for deployment {key[0]}")
        try:
            return worker.call(payload)
        except FunctionError as exc:
            if exc.traceback:
                log.warning("deployed function raised: %s", exc.traceback)
            raise

    def keep_only(self, deployment_id: str, key: Key | None) -> None:
        """Stop the workers of ``deployment_id`` other than ``key`` (all of them for None: deleted)."""
        with self._lock:
            if key is None:
                self._gone.add(deployment_id)
            stale = [k for k in self._workers if k[0] == deployment_id and k != key]
            workers = [self._workers.pop(k) for k in stale]
        for worker in workers:
            worker.stop()

    def stop(self) -> None:
        """Stop every worker and remove every installed extension (the emulator's reset or stop)."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
            self._installed.clear()
            self._gone.clear()
        for worker in workers:
            worker.stop()
        for child in self.root.glob("*"):
            shutil.rmtree(child, ignore_errors=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
