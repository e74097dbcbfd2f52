"""Crash-safe file writes: a reader sees the old content or the new, never half a file, never a stray temp file.

``atomic_write`` writes a temp file in the same folder, fsyncs it, renames it over the target
and fsyncs the folder; ``atomic_copy`` does the same for a copied file or folder. On any
failure (read-only or full filesystem, a missing folder) the temp file is removed and a
``deploykit.errors.FileWriteError`` (a DeployKitError and an ``OSError``) names the file, the cause and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path

from deploykit.errors import FileWriteError

__all__ = ["FileWriteError", "atomic_copy", "atomic_write", "decode_utf8"]

_FIXES = {
    errno.ENOSPC: "free disk space there and run it again",
    errno.EDQUOT: "free space within your disk quota and run it again",
    errno.EROFS: "the filesystem is read-only; run from a writable folder",
    errno.EACCES: "give your user write permission on that folder",
    errno.EPERM: "give your user write permission on that folder",
    errno.ENOENT: "create the folder first",
}


def _error(path: Path, exc: OSError) -> FileWriteError:
    fix = _FIXES.get(exc.errno or 0, "fix the cause and run it again")
    cause = exc.strerror or str(exc)
    return FileWriteError(exc.errno or 0, f"cannot write {str(path)!r} ({cause}); {fix}; it was left as it was")


def _fsync_dir(folder: Path) -> None:
    # A rename is durable only once its folder is synced; not every platform can open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (file permissions exactly ``mode``, whatever the umask) atomically
    and durably.

    The temp file is ``.<name>.<pid>.<thread>.tmp`` beside ``path``, so a writer killed mid-write
    leaves a name its next run can recognise and remove. Raises FileWriteError (an OSError that
    keeps the errno) naming the file and the fix; no temp file stays behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise _error(path, exc) from exc
    _fsync_dir(path.parent)


def atomic_copy(source: Path, path: Path) -> None:
    """Copy the file or folder ``source`` to ``path`` atomically: ``path`` appears complete or not at all.

    Raises FileWriteError naming ``path`` and the fix; a partial copy is removed.
    """
    source, path = Path(source), Path(path)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        staged = tmp / "copy"
        if source.is_dir():
            shutil.copytree(source, staged)
        else:
            shutil.copy2(source, staged)
            with open(staged, "rb") as done:
                os.fsync(done.fileno())
        os.replace(staged, path)
    except OSError as exc:
        raise _error(path, exc) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(path.parent)


def decode_utf8(raw: bytes) -> str:
    """``raw`` decoded as UTF-8; a ValueError saying where it is not: ``byte 0xff at offset 26 (line 3)``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line})") from None
